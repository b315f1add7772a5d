"""Checks of deploy/compose.yml as podman-compose resolved it (`podman-compose config`
output on stdin), beyond what parsing checks:

- every `depends_on: condition: service_healthy` names a service with a health check
  (in the file, or in the project's image: edge-agent and processor have one);
- every named volume a service mounts is declared, and every service with state
  keeps it in a named volume;
- published ports are bound to 127.0.0.1;
- bind-mounted host paths exist (those under deploy/monitoring only when that folder
  is part of the checkout; it is reported when it is not).

    check.py ROOT < config.yaml
"""

import os
import sys

import yaml

IMAGE_HEALTHCHECKS = {"edge-agent", "processor"}
STATEFUL = {
    "kafka-1": "/var/lib/kafka/data",
    "kafka-2": "/var/lib/kafka/data",
    "kafka-3": "/var/lib/kafka/data",
    "postgres": "/var/lib/postgresql/data",
    "redis": "/data",
    "opensearch": "/usr/share/opensearch/data",
    "edge-agent": "/var/lib/edge-agent",
    "prometheus": "/prometheus",
    "grafana": "/var/lib/grafana",
}


def main():
    root = sys.argv[1]
    config = yaml.safe_load(sys.stdin)
    services = config["services"]
    volumes = set((config.get("volumes") or {}).keys())
    errors = []
    expected = {"kafka-1", "kafka-2", "kafka-3", "postgres", "redis", "opensearch", "edge-agent",
                "processor", "loadgen", "prometheus", "grafana"}
    if set(services) != expected:
        errors.append(f"services {sorted(services)} are not {sorted(expected)}")
    monitoring = os.path.isdir(os.path.join(root, "deploy", "monitoring"))
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            if dep not in services:
                errors.append(f"{name} depends on unknown {dep}")
            elif spec.get("condition") == "service_healthy":
                if "healthcheck" not in services[dep] and dep not in IMAGE_HEALTHCHECKS:
                    errors.append(f"{name} waits for {dep} to be healthy, which has no health check")
        mounts = {}
        for v in service.get("volumes") or []:
            if isinstance(v, str):
                source, target = v.split(":")[:2]
            else:
                source, target = v.get("source"), v.get("target")
            mounts[target] = source
            if source.startswith(("/", ".")):
                path = os.path.normpath(os.path.join(root, "deploy", source))
                if not os.path.exists(path):
                    if "/deploy/monitoring" in path and not monitoring:
                        print(f"check.py: deploy/monitoring is not in this checkout: {source} not checked")
                    else:
                        errors.append(f"{name} mounts {source}, which does not exist")
            elif source not in volumes:
                errors.append(f"{name} mounts undeclared volume {source}")
        if name in STATEFUL and mounts.get(STATEFUL[name]) not in volumes:
            errors.append(f"{name} keeps {STATEFUL[name]} outside a named volume")
        for p in service.get("ports") or []:
            published = p if isinstance(p, str) else f"{p.get('host_ip')}:{p.get('published')}"
            if not str(published).startswith("127.0.0.1:"):
                errors.append(f"{name} publishes {published} beyond loopback")
    if errors:
        sys.exit("check.py: " + "\n  ".join(["compose.yml:"] + errors))
    print(f"check.py: compose.yml: {len(services)} services, {len(volumes)} named volumes, health-gated start order")


main()
