#!/usr/bin/env python3
"""Policy check of rendered Kubernetes manifests (`kubectl kustomize … | policy.py -`).

Every pod template must meet the Pod Security Standards' restricted profile (as enforced by
kube-apiserver's pod-security admission, baseline checks included) plus this project's extras:
a read-only root filesystem, no service-account token, resources, probes, and for the API the
shutdown choreography (preStop sleep, grace period above drain + shutdown timeout), rollout
settings and a cursor key from a Secret file; a StatefulSet of more than one pod (Redis with
replicas, the Sentinels) keeps its pods on different nodes and has a PodDisruptionBudget; a
Sentinel keeps its config file on a volume of its pod's own (a StatefulSet's
volumeClaimTemplates), since that file is its memory; a Secret is never mounted file by file
(subPath) where its files are TLS material or the mount is the API's, since a subPath mount keeps
the files it first saw and a renewed certificate would never reach the pod; when the API's URL is
rediss://, every Redis and Sentinel of the rendering listens with TLS only, and those that
connect to each other (replicas, Sentinels) do so over TLS. Every object carries
the recommended labels and sits in the rendering's namespace; the Secrets and ConfigMaps pods
reference exist (Secrets only where the rendering generates them or a cert-manager Certificate
writes them: prod's come from outside). Exits 1 and lists every violation.
"""

import re
import sys

import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
REQUIRED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by")
# Names that say a Secret (or the volume, or the file) holds certificates or their keys.
TLS_NAME = re.compile(r"(^|[-_./])(tls|ssl|certs?|ca|pki)([-_./]|$)|\.(crt|pem|key|cer|p12|pfx)$", re.IGNORECASE)
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "IngressClass", "PriorityClass", "StorageClass"}


def pod_spec(obj):
    spec = obj.get("spec", {})
    if obj["kind"] == "Pod":
        return spec
    if obj["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    return spec["template"]["spec"]


def references(spec, kind):
    """The names of the Secrets (kind "secret") or ConfigMaps ("configMap") a pod spec uses."""
    key, ref = {"secret": ("secretKeyRef", "secretRef"), "configMap": ("configMapKeyRef", "configMapRef")}[kind]
    names = set()
    for volume in spec.get("volumes", []):
        if kind in volume:
            names.add(volume[kind].get("secretName" if kind == "secret" else "name"))
        for source in (volume.get("projected") or {}).get("sources", []):
            if kind in source:
                names.add(source[kind].get("name"))
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        for variable in container.get("env", []):
            names.add(((variable.get("valueFrom") or {}).get(key) or {}).get("name"))
        for source in container.get("envFrom", []):
            names.add((source.get(ref) or {}).get("name"))
    return names - {None}


def secret_mounts(spec, container):
    """The directories where `container` sees files from Secrets."""
    from_secrets = {
        volume["name"] for volume in spec.get("volumes", [])
        if "secret" in volume
        or any("secret" in source for source in (volume.get("projected") or {}).get("sources", []))
    }
    return [mount["mountPath"].rstrip("/") for mount in container.get("volumeMounts", []) if mount["name"] in from_secrets]


def check_secret_subpaths(name, spec, problems, api, tls_secrets):
    """A subPath mount is a bind mount of one file, made when the container starts: the kubelet
    updates a Secret volume by swapping the directory's contents, which such a mount never sees.
    For TLS material (renewed by cert-manager or an operator, and read again by the service at
    each new connection) or anything the API reads, that means files that silently go stale."""
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        for mount in container.get("volumeMounts", []):
            sub_path = mount.get("subPath") or mount.get("subPathExpr")
            volume = volumes.get(mount["name"], {})
            sources = [volume["secret"]] if "secret" in volume else []
            sources += [source["secret"] for source in (volume.get("projected") or {}).get("sources", []) if "secret" in source]
            if not sub_path or not sources:
                continue
            secrets = [source.get("secretName") or source.get("name") for source in sources]
            keys = [item.get(field, "") for source in sources for item in source.get("items", []) for field in ("key", "path")]
            tls = any(secret in tls_secrets for secret in secrets) or any(
                TLS_NAME.search(word or "") for word in secrets + keys + [mount["name"], sub_path, mount["mountPath"]]
            )
            if api or tls:
                what = "TLS material" if tls else "a Secret the API reads"
                problems.append(
                    f"{name}: container {container['name']} mounts {what} (Secret {', '.join(map(str, secrets))}) at "
                    f"{mount['mountPath']} with subPath {sub_path}: a renewed Secret never reaches the pod; mount the directory"
                )


def check_redis_tls(objects, configmaps, problems):
    """With a rediss:// URL the service speaks only TLS, to Redis and to the Sentinels. A Redis
    or Sentinel that still listens in plaintext (the redis-tls component listed before redis-ha,
    whose arguments replace its flags) refuses every connection, and one that replicates or
    monitors without tls-replication cannot reach the others. Arguments only: later ones win."""
    if not any(str(data.get("TSAPI_REDIS__URL", "")).startswith("rediss://") for data in configmaps.values()):
        return
    for obj in objects:
        component = obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        if obj["kind"] != "StatefulSet" or component not in ("database", "sentinel"):
            continue
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        for container in pod_spec(obj).get("containers", []):
            arguments = (container.get("command") or [])[1:] + (container.get("args") or [])
            last = dict(zip(arguments, arguments[1:]))
            where = f"{name}: container {container['name']}"
            if last.get("--port") != "0" or "--tls-port" not in last:
                problems.append(f"{where} does not listen with TLS only (--port 0, --tls-port), but the API's URL is rediss://")
            if (component == "sentinel" or obj["spec"].get("replicas", 1) > 1) and last.get("--tls-replication") != "yes":
                problems.append(f"{where} connects to the other nodes without --tls-replication yes, but they speak TLS only")


def seconds(value):
    match = re.fullmatch(r"(\d+)(ms|s|m)", value or "0s")
    if not match:
        return 0
    number, unit = int(match.group(1)), match.group(2)
    return {"ms": number / 1000, "s": number, "m": number * 60}[unit]


def check_pod(name, spec, problems, config):
    def problem(text):
        problems.append(f"{name}: {text}")

    pod_security = spec.get("securityContext") or {}
    containers = spec.get("containers", []) + spec.get("initContainers", []) + spec.get("ephemeralContainers", [])
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            problem(f"{key} is set")
    if spec.get("automountServiceAccountToken") is not False:
        problem("automountServiceAccountToken is not false")
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problem(f"volume {volume['name']} is of a type the restricted profile forbids: {sorted(kinds)}")
    for sysctl in pod_security.get("sysctls", []):
        problem(f"sysctl {sysctl.get('name')} is set")

    for container in containers:
        where = f"container {container['name']}"
        security = container.get("securityContext") or {}
        effective = {**pod_security, **security}
        if security.get("privileged"):
            problem(f"{where} is privileged")
        if security.get("allowPrivilegeEscalation") is not False:
            problem(f"{where}: allowPrivilegeEscalation is not false")
        capabilities = security.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problem(f"{where}: capabilities do not drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problem(f"{where}: adds capabilities {capabilities['add']}")
        if effective.get("runAsNonRoot") is not True:
            problem(f"{where}: runAsNonRoot is not true")
        if effective.get("runAsUser") == 0:
            problem(f"{where}: runs as user 0")
        if (effective.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problem(f"{where}: seccompProfile is not RuntimeDefault or Localhost")
        if security.get("procMount", "Default") != "Default":
            problem(f"{where}: procMount is not Default")
        if security.get("readOnlyRootFilesystem") is not True:
            problem(f"{where}: readOnlyRootFilesystem is not true")
        for port in container.get("ports", []):
            if port.get("hostPort"):
                problem(f"{where}: uses hostPort {port['hostPort']}")
        image = container.get("image", "")
        if ":" not in image.rsplit("/", 1)[-1] and "@sha256:" not in image or image.endswith(":latest"):
            problem(f"{where}: image {image!r} is not pinned to a tag or digest")
        resources = container.get("resources") or {}
        for kind, resource in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
            if resource not in (resources.get(kind) or {}):
                problem(f"{where}: no {kind}.{resource}")
        if container in spec.get("containers", []) and config["long_running"]:
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in container:
                    problem(f"{where}: no {probe}")


def check_api(obj, problems, configmaps):
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    spec = obj["spec"]
    strategy = spec.get("strategy", {})
    rolling = strategy.get("rollingUpdate", {})
    if strategy.get("type") != "RollingUpdate" or rolling.get("maxUnavailable") != 0 or rolling.get("maxSurge") != 1:
        problems.append(f"{name}: rollout must be RollingUpdate with maxUnavailable 0, maxSurge 1")
    for field in ("minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit"):
        if field not in spec:
            problems.append(f"{name}: {field} is not set")
    pod = spec["template"]["spec"]
    keys = {constraint["topologyKey"] for constraint in pod.get("topologySpreadConstraints", [])}
    if not {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= keys:
        problems.append(f"{name}: no topology spread across nodes and zones")
    annotations = spec["template"].get("metadata", {}).get("annotations", {})
    if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/port") != "9090":
        problems.append(f"{name}: no Prometheus scrape annotations for the admin port")
    container = pod["containers"][0]
    sleep = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
    if not sleep:
        problems.append(f"{name}: no preStop sleep action")
    for probe, path in (("startupProbe", "/livez"), ("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        http = container.get(probe, {}).get("httpGet", {})
        if http.get("path") != path or http.get("port") != "admin":
            problems.append(f"{name}: {probe} is not httpGet {path} on the admin port")
    environment = {}
    for source in container.get("envFrom", []):
        environment.update(configmaps.get(source.get("configMapRef", {}).get("name"), {}))
    drain = seconds(environment.get("TSAPI_DRAIN_DELAY"))
    shutdown = seconds(environment.get("TSAPI_SHUTDOWN_TIMEOUT", "10s"))
    if not drain:
        problems.append(f"{name}: TSAPI_DRAIN_DELAY is not set through the service's config")
    # Replicas must sign list cursors with one key, or a cursor from one is a 400 at another.
    key_file = environment.get("TSAPI_CURSOR_KEY_FILE")
    if not key_file:
        problems.append(f"{name}: TSAPI_CURSOR_KEY_FILE is not set through the service's config: each replica would draw its own cursor key")
    elif not any(key_file.startswith(directory + "/") for directory in secret_mounts(pod, container)):
        problems.append(f"{name}: TSAPI_CURSOR_KEY_FILE {key_file} is not in a directory mounted from a Secret")
    # The service refuses both at start; a rendering that has both combined redis-ha and
    # redis-cluster, which also fight over the data pods' StatefulSet.
    if environment.get("TSAPI_REDIS__CLUSTER__ADDRESSES") and environment.get("TSAPI_REDIS__SENTINEL__ADDRESSES"):
        problems.append(f"{name}: both TSAPI_REDIS__CLUSTER__ADDRESSES and TSAPI_REDIS__SENTINEL__ADDRESSES are set: use redis-cluster or redis-ha, not both")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace <= (sleep or 0) + drain + shutdown:
        problems.append(f"{name}: terminationGracePeriodSeconds {grace} is not above preStop {sleep} + drain {drain} + shutdown {shutdown}")


def check_replicated_statefulset(obj, problems, budgets):
    """Replicas of a stateful service are only worth having on different nodes, and a drain
    must not take more of them at once than the service can lose."""
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    labels = obj["spec"]["template"]["metadata"].get("labels", {})

    def selects(selector):
        return bool(selector) and all(labels.get(key) == value for key, value in selector.items())

    anti_affinity = ((obj["spec"]["template"]["spec"].get("affinity") or {}).get("podAntiAffinity") or {})
    if not any(
        term.get("topologyKey") == "kubernetes.io/hostname" and selects(term.get("labelSelector", {}).get("matchLabels"))
        for term in anti_affinity.get("requiredDuringSchedulingIgnoredDuringExecution", [])
    ):
        problems.append(f"{name}: {obj['spec']['replicas']} replicas without required podAntiAffinity on kubernetes.io/hostname")
    if not any(selects(selector) for selector in budgets):
        problems.append(f"{name}: {obj['spec']['replicas']} replicas without a PodDisruptionBudget")


def check_sentinels(obj, problems):
    """Sentinel keeps what it learns (above all, which node is the primary after a failover) by
    rewriting its config file. On /dev/null, on an emptyDir or in a Deployment's pods, every
    Sentinel restarted at once goes back to the primary it was first told about."""
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    spec = pod_spec(obj)
    claims = {template["metadata"]["name"] for template in obj["spec"].get("volumeClaimTemplates", [])} if obj["kind"] == "StatefulSet" else set()
    for container in spec.get("containers", []):
        command, args = container.get("command") or [], container.get("args") or []
        arguments = command[1:] + args if command else args
        if "--sentinel" not in arguments and not any(word.endswith("redis-sentinel") for word in command[:1]):
            continue
        # redis-server's first argument is the config file unless it is an option.
        config = arguments[0] if arguments and not arguments[0].startswith("-") else None
        mounts = [
            mount for mount in container.get("volumeMounts", [])
            if config and config.startswith(mount["mountPath"].rstrip("/") + "/")
        ]
        mount = max(mounts, key=lambda mount: len(mount["mountPath"]), default=None)
        if not mount or mount["name"] not in claims or mount.get("readOnly"):
            problems.append(
                f"{name}: container {container['name']} runs Sentinel with its config file ({config}) not on a "
                "writable volume from volumeClaimTemplates: a restart forgets every failover"
            )


def check(documents):
    problems = []
    objects = [document for document in documents if document]
    configmaps = {obj["metadata"]["name"]: obj.get("data", {}) for obj in objects if obj["kind"] == "ConfigMap"}
    kinds = {obj["kind"] for obj in objects}
    namespaces = {obj["metadata"]["name"] for obj in objects if obj["kind"] == "Namespace"}
    secrets = {obj["metadata"]["name"] for obj in objects if obj["kind"] == "Secret"}
    # cert-manager writes these; a Secret of type kubernetes.io/tls holds a certificate too.
    tls_secrets = {obj["spec"].get("secretName") for obj in objects if obj["kind"] == "Certificate" and obj["apiVersion"].startswith("cert-manager.io/")}
    tls_secrets |= {obj["metadata"]["name"] for obj in objects if obj["kind"] == "Secret" and obj.get("type") == "kubernetes.io/tls"}
    tls_secrets -= {None}
    budgets = [obj["spec"].get("selector", {}).get("matchLabels") for obj in objects if obj["kind"] == "PodDisruptionBudget"]
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        labels = obj["metadata"].get("labels", {})
        missing = [label for label in REQUIRED_LABELS if label not in labels]
        if missing:
            problems.append(f"{name}: missing labels {missing}")
        if namespaces and obj["kind"] not in CLUSTER_SCOPED and obj["metadata"].get("namespace") not in namespaces:
            problems.append(f"{name}: in namespace {obj['metadata'].get('namespace')!r}, not in {sorted(namespaces)}")
        if obj["kind"] in WORKLOADS:
            long_running = obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet"}
            check_pod(name, pod_spec(obj), problems, {"long_running": long_running})
            for missing in sorted(references(pod_spec(obj), "configMap") - set(configmaps)):
                problems.append(f"{name}: references ConfigMap {missing}, which is not in the rendering")
            for missing in sorted(references(pod_spec(obj), "secret") - secrets - tls_secrets if secrets else ()):
                problems.append(f"{name}: references Secret {missing}, which is not in the rendering")
            api = obj["kind"] == "Deployment" and labels.get("app.kubernetes.io/component") == "api"
            if api:
                check_api(obj, problems, configmaps)
            check_secret_subpaths(name, pod_spec(obj), problems, api, tls_secrets)
            if obj["kind"] == "StatefulSet" and obj["spec"].get("replicas", 1) > 1:
                check_replicated_statefulset(obj, problems, budgets)
            check_sentinels(obj, problems)
        if obj["kind"] == "Namespace":
            ns_labels = obj["metadata"].get("labels", {})
            for mode in ("enforce", "audit", "warn"):
                if ns_labels.get(f"pod-security.kubernetes.io/{mode}") != "restricted":
                    problems.append(f"{name}: pod-security.kubernetes.io/{mode} is not restricted")
        if obj["kind"] == "Ingress":
            for rule in obj["spec"].get("rules", []):
                for path in rule.get("http", {}).get("paths", []):
                    port = path["backend"]["service"]["port"]
                    if path["path"] not in ("/v1", "/openapi.json") or port.get("name") != "http":
                        problems.append(f"{name}: routes {path['path']} to port {port}")
    check_redis_tls(objects, configmaps, problems)
    if "Namespace" in kinds and not any(
        obj["kind"] == "NetworkPolicy" and obj["spec"].get("podSelector") == {} and
        set(obj["spec"].get("policyTypes", [])) == {"Ingress", "Egress"} and
        not obj["spec"].get("ingress") and not obj["spec"].get("egress")
        for obj in objects
    ):
        problems.append("no default-deny NetworkPolicy for the namespace")
    if not any(obj["kind"] in WORKLOADS for obj in objects):
        problems.append("no workload found: nothing was checked")
    return problems


def main():
    paths = sys.argv[1:] or ["-"]
    failed = False
    for path in paths:
        stream = sys.stdin if path == "-" else open(path)
        problems = check(list(yaml.safe_load_all(stream)))
        for problem in problems:
            print(f"{path}: {problem}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
