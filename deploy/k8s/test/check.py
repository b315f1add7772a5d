"""Checks of the rendered manifests beyond the Kubernetes schemas, and the
transformation of the rendered sidecar overlay into a pod podman can run here.

    check.py invariants OVERLAY < rendered.yaml
    check.py podman-pod --images REPO TAG --brokers B --port P --prefix X --event-id ID
             [--host-dir DIR] < rendered.yaml

Reads YAML with PyYAML (installed with kubernetes-validate).
"""

import argparse
import base64
import re
import sys

import yaml

PARTITIONS = 10  # the default topics.*.partitions of the edge agent


def fail(message):
    sys.exit(f"check.py: {message}")


def workloads(docs):
    return [d for d in docs if d and d["kind"] in ("Deployment", "DaemonSet")]


def duration_ms(toml_text, key, default):
    match = re.search(rf"^{key}\s*=\s*(\d+)", toml_text, re.M)
    return int(match.group(1)) if match else default


def invariants(docs, overlay):
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs if d}
    agent_toml = next(
        d["data"]["agent.toml"] for d in docs if d and d["kind"] == "ConfigMap" and "agent.toml" in d.get("data", {})
    )
    shutdown_s = duration_ms(agent_toml, "shutdown_timeout_ms", 30000) / 1000
    agents = 0
    for w in workloads(docs):
        spec = w["spec"]["template"]["spec"]
        name = w["metadata"]["name"]
        for c in spec["containers"] + spec.get("initContainers", []):
            res = c.get("resources", {})
            if "requests" not in res or "memory" not in res.get("limits", {}):
                fail(f"{name}/{c['name']}: no resource requests or memory limit")
            if c.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
                fail(f"{name}/{c['name']}: allowPrivilegeEscalation is not false")
        for c in spec["containers"]:
            if c["name"] not in ("edge-agent", "processor"):
                continue
            for probe in ("livenessProbe", "readinessProbe"):
                path = c.get(probe, {}).get("httpGet", {}).get("path")
                if path not in ("/health/live", "/health/ready"):
                    fail(f"{name}/{c['name']}: {probe} is not on a health endpoint")
            if c["name"] == "edge-agent":
                agents += 1
                pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
                pause = int(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0
                grace = spec.get("terminationGracePeriodSeconds", 30)
                if grace < pause + shutdown_s + 5:
                    fail(f"{name}: grace {grace} s < preStop {pause} s + shutdown {shutdown_s} s + 5 s")
        if name == "processor":
            if w["spec"]["replicas"] > PARTITIONS:
                fail(f"processor: {w['spec']['replicas']} replicas > {PARTITIONS} partitions")
            if ("PodDisruptionBudget", "processor") not in kinds:
                fail("processor: no PodDisruptionBudget")
    if agents != 1:
        fail(f"{overlay}: {agents} edge-agent containers (expected 1)")
    print(f"check.py: {overlay}: invariants hold ({len(docs)} objects)")


def podman_pods(docs, a):
    """The storefront Deployment (and the overlay's edge-agent DaemonSet, as a
    one-replica Deployment) with what they reference, made runnable by podman on this
    machine: one replica each on the host's network (the test Kafka listens on
    127.0.0.1), local images, the agent on a free port, its own topics, hostPath
    directories under --host-dir."""
    workloads = []
    for d in docs:
        if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "storefront":
            workloads.append(d)
        elif d and d["kind"] == "DaemonSet" and d["metadata"]["name"] == "edge-agent":
            # podman 4.3 plays Pods and Deployments, not DaemonSets: one node, one pod.
            d["kind"] = "Deployment"
            d["spec"].pop("updateStrategy", None)
            d["spec"]["replicas"] = 1
            workloads.insert(0, d)
    refs = set()
    for w in workloads:
        spec = w["spec"]["template"]["spec"]
        for v in spec["volumes"]:
            refs.add(v.get("configMap", {}).get("name"))
            refs.add(v.get("secret", {}).get("secretName"))
        for c in spec["containers"]:
            for e in c.get("envFrom", []):
                refs.add(e.get("configMapRef", {}).get("name"))
            for e in c.get("env", []):
                refs.add(e.get("valueFrom", {}).get("secretKeyRef", {}).get("name"))
    out = [d for d in docs if d and d["kind"] in ("ConfigMap", "Secret") and d["metadata"]["name"] in refs]
    # podman 4.3 (Debian 12) crashes on Secret volumes and resolves secretKeyRef from its
    # own secret store: the Secrets become ConfigMaps with the same content here.
    secrets = {}
    for d in out:
        if d["kind"] == "Secret":
            name = d["metadata"]["name"]
            data = {k: base64.b64decode(v).decode() for k, v in d.get("data", {}).items()}
            data.update(d.get("stringData", {}))
            secrets[name] = data
            d.clear()
            d.update(apiVersion="v1", kind="ConfigMap", metadata={"name": name}, data=data)
    image = f"{a.images[0]}/edge-agent:{a.images[1]}"
    for w in workloads:
        # Names of this run's own: podman names the pods after them.
        w["metadata"]["name"] = f"{a.prefix}-{w['metadata']['name']}"
        w["spec"]["replicas"] = 1
        spec = w["spec"]["template"]["spec"]
        spec["hostNetwork"] = True
        for v in spec["volumes"]:
            if "secret" in v:
                secret = v.pop("secret")
                v["configMap"] = {"name": secret["secretName"], "items": secret.get("items", [])}
            if "hostPath" in v:
                v["hostPath"]["path"] = a.host_dir + v["hostPath"]["path"]
        for c in spec.get("initContainers", []):
            c["image"] = image
        # podman 4.3 removes a finished "once" init container and sometimes finds it
        # still running ("container state improper"): keep it instead.
        # podman reads the annotation from the workload's own metadata, not the template's.
        if spec.get("initContainers"):
            w["metadata"].setdefault("annotations", {})["io.podman.annotations.init.container.type"] = "always"
        for c in spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    e.pop("valueFrom")
                    e["value"] = secrets[ref["name"]][ref["key"]]
                # podman knows no node: the DaemonSet's spec.nodeName is a fixed name.
                if e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
                    e.pop("valueFrom")
                    e["value"] = "test-node"
            # podman 4.3 ignores fsGroup (no supplementary group, and an emptyDir
            # belongs to the first container's user): here the storefront runs as the
            # agent's user. scripts/test-containers checks the group access instead.
            c["securityContext"].update(runAsUser=10001, runAsGroup=10001)
            c["image"] = image
            if c["name"] == "edge-agent":
                # On the host's network podman publishes nothing: the probes name the port.
                c.pop("ports")
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    c[probe]["httpGet"]["port"] = a.port
                c.pop("lifecycle", None)
            else:
                # Any image with sh and curl: the agent's has both.
                body = (
                    f'{{"event_id":"{a.event_id}","user_id":"u-{a.prefix}","product_id":"sku-1",'
                    '"price":19.99,"currency":"EUR"}'
                )
                c["args"] = [
                    "for i in $(seq 1 60); do "
                    "curl -fsS --unix-socket /run/edge-agent/agent.sock "
                    '-H "Authorization: Bearer $INGEST_API_KEY" -H "Content-Type: application/json" '
                    f"-H 'Ingest-Ack: delivered' -d '{body}' http://localhost/api/events/product-view && break; "
                    "sleep 1; done; echo; trap 'exit 0' TERM; sleep 3600 & wait"
                ]
    for d in out:
        if d["kind"] == "ConfigMap" and "EDGE_AGENT_KAFKA__BROKERS" in d.get("data", {}):
            d["data"]["EDGE_AGENT_KAFKA__BROKERS"] = a.brokers
            d["data"]["EDGE_AGENT_SERVER__LISTEN"] = f"127.0.0.1:{a.port}"
            d["data"]["EDGE_AGENT_CREATE_TOPICS"] = "true"
            for key, topic in (
                ("PRODUCT_VIEW", "product-views"),
                ("CART", "cart-events"),
                ("PURCHASE", "purchases"),
                ("SEARCH", "search-events"),
                ("DEAD_LETTER", "events-dlq"),
            ):
                d["data"][f"EDGE_AGENT_TOPICS__{key}__NAME"] = f"{a.prefix}-{topic}"
                d["data"][f"EDGE_AGENT_TOPICS__{key}__PARTITIONS"] = "1"
                d["data"][f"EDGE_AGENT_TOPICS__{key}__REPLICATION_FACTOR"] = "1"
    yaml.safe_dump_all(out + workloads, sys.stdout, sort_keys=False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["invariants", "podman-pod"])
    parser.add_argument("overlay", nargs="?")
    parser.add_argument("--images", nargs=2)
    parser.add_argument("--brokers")
    parser.add_argument("--port", type=int)
    parser.add_argument("--prefix")
    parser.add_argument("--event-id")
    parser.add_argument("--host-dir", default="/nonexistent")
    a = parser.parse_args()
    docs = list(yaml.safe_load_all(sys.stdin))
    if a.mode == "invariants":
        invariants(docs, a.overlay)
    else:
        podman_pods(docs, a)


main()
