// One OpenSearch node in this JVM, for scripts/services. Run from source (java
// OpenSearchNode.java BASE_DIR HTTP_PORT TRANSPORT_PORT) with the jars of pom.xml on the
// class path.
//
// Why not the runner's own main class: it swallows start-up failures (exit 1, no
// message), and it probes its HTTP port by connecting to "localhost", which on hosts
// where that name resolves to an unreachable ::1 makes every port look taken. Here the
// ports are fixed, the node binds to 127.0.0.1 only, and a failure prints its cause.
import org.codelibs.opensearch.runner.OpenSearchRunner;

public class OpenSearchNode {
  public static void main(String[] args) throws Exception {
    if (args.length != 3) {
      System.err.println("usage: OpenSearchNode BASE_DIR HTTP_PORT TRANSPORT_PORT");
      System.exit(2);
    }
    String base = args[0];
    String httpPort = args[1];
    String transportPort = args[2];
    OpenSearchRunner runner = new OpenSearchRunner();
    runner.setMaxHttpPort(-1);
    runner.onBuild((number, settings) -> settings
        .put("network.host", "127.0.0.1")
        .put("http.port", httpPort)
        .put("transport.port", transportPort)
        .put("discovery.type", "single-node")
        // A nearly full disk must not turn the indices read-only on a dev machine.
        .put("cluster.routing.allocation.disk.threshold_enabled", "false"));
    try {
      runner.build(new OpenSearchRunner.Configs()
          .basePath(base).numOfNode(1).clusterName("ingest-dev").build());
    } catch (Throwable t) {
      t.printStackTrace();
      System.exit(1);
    }
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      try {
        runner.close();
      } catch (Exception e) {
        e.printStackTrace();
      }
    }));
    while (!runner.isClosed()) {
      Thread.sleep(1000);
    }
  }
}
