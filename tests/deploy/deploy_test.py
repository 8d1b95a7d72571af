#!/usr/bin/env python3
"""Checks deploy/ as far as this machine can: the Helm chart renders (Go's text/template with
Sprig, Helm's engine, through tools/chart-render) to valid Kubernetes YAML with the fields a
cluster needs, for each supported values combination; every kiln flag the chart, the systemd
units and the GCP startup script pass exists; the KEDA metrics-api path reads a real
/v1/autoscale answer; the systemd units pass `systemd-analyze verify`; the Terraform files are
`terraform fmt` clean (checked with terraform when it is on PATH, otherwise with HCL's own formatter,
tools/hcl-fmt) and the startup script's template variables match what main.tf passes.

Usage: deploy_test.py KILN_BINARY TEST_MODELS_DIR WORK_DIR
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "deploy", "helm", "kiln")
FAILURES = []


def check(cond, message):
    if not cond:
        FAILURES.append(message)
        print("FAIL:", message)
    return cond


def build_go_tool(work, name):
    """Builds tools/NAME against the Go libraries Debian packages (GOPATH mode, no downloads)."""
    out = os.path.join(work, name)
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode",
               GOCACHE=os.path.join(work, "go-cache"), GOFLAGS="")
    subprocess.run(["go", "build", "-o", out, "."], cwd=os.path.join(ROOT, "tools", name),
                   env=env, check=True, timeout=300)
    return out


def render(renderer, work, values, expect_error=None, release="prod"):
    path = os.path.join(work, "values-%d.yaml" % abs(hash(json.dumps(values, sort_keys=True))))
    with open(path, "w") as f:
        yaml.safe_dump(values, f)
    r = subprocess.run([renderer, "-f", path, "-name", release, "-namespace", "ml", CHART],
                       capture_output=True, text=True, timeout=60)
    if expect_error is not None:
        check(r.returncode != 0 and expect_error in r.stderr,
              "rendering %s should fail with %r, got rc %d: %s" % (values, expect_error,
                                                                   r.returncode, r.stderr))
        return []
    if not check(r.returncode == 0, "rendering %s failed: %s" % (values, r.stderr)):
        return []
    docs = [d for d in yaml.safe_load_all(r.stdout) if d is not None]
    for d in docs:
        for field in ("apiVersion", "kind", "metadata"):
            check(field in d, "a manifest lacks %s: %s" % (field, d))
        check(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", d["metadata"].get("name", "")) is not None
              and len(d["metadata"]["name"]) <= 63, "bad name in %s" % d["metadata"])
    return docs


def find(docs, kind, suffix=""):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    return found[0] if len(found) == 1 else None


def flag_names(args):
    return {a.split("=", 1)[0] for a in args if a.startswith("--")}


def has_flag(help_text, flag):
    return re.search(r"(^|[\s,])" + re.escape(flag) + r"(?![\w-])", help_text, re.M) is not None


def check_pod(spec, help_text, kind_name):
    containers = spec.get("containers") or []
    if not check(len(containers) == 1, "%s: one container expected" % kind_name):
        return None
    c = containers[0]
    for field in ("name", "image", "args"):
        check(c.get(field), "%s: container lacks %s" % (kind_name, field))
    for flag in flag_names(c.get("args", [])):
        check(has_flag(help_text, flag), "%s passes %s, which `kiln %s --help` does not list" %
              (kind_name, flag, c["args"][0]))
    env = {e["name"]: e for e in c.get("env", [])}
    for var in ("KILN_QUEUE", "KILN_STORE"):
        check(var in env and "secretKeyRef" in env[var].get("valueFrom", {}),
              "%s: %s must come from the Secret" % (kind_name, var))
    # Every $(VAR) in args is defined in env (Kubernetes leaves unknown ones as they are).
    for a in c.get("args", []):
        for var in re.findall(r"\$\((\w+)\)", a):
            check(var in env, "%s: args use $(%s) but env lacks it" % (kind_name, var))
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    check("http" in ports, "%s: no http port" % kind_name)
    port_arg = [a for a in c.get("args", []) if a.startswith("--port=")]
    check(port_arg and int(port_arg[0].split("=")[1]) == ports.get("http"),
          "%s: --port and the http containerPort differ" % kind_name)
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        check(c.get(probe, {}).get("httpGet", {}).get("path") == path,
              "%s: %s must GET %s" % (kind_name, probe, path))
        check(c.get(probe, {}).get("httpGet", {}).get("port") in ("http", ports.get("http")),
              "%s: %s must use the http port" % (kind_name, probe))
    return c


def check_chart(renderer, work, serve_help, worker_help):
    base = {"connection": {"queue": "amqp://kiln:pw@rabbitmq:5672/kiln",
                           "store": "s3://kiln?region=us-east-1"}}

    # Defaults: gateways + Service, GPU workers, a ScaledObject on /v1/autoscale.
    docs = render(renderer, work, base)
    gw = find(docs, "Deployment", "-gateway")
    wk = find(docs, "Deployment", "-worker")
    svc = find(docs, "Service", "-gateway")
    so = find(docs, "ScaledObject")
    secret = find(docs, "Secret")
    if not (check(gw and wk and svc and so and secret,
                  "defaults must render a gateway Deployment and Service, a worker Deployment, "
                  "a ScaledObject and a Secret: %s" % [(d["kind"], d["metadata"]["name"]) for d in docs])):
        return
    for dep in (gw, wk):
        sel = dep["spec"]["selector"]["matchLabels"]
        tpl_labels = dep["spec"]["template"]["metadata"]["labels"]
        check(all(tpl_labels.get(k) == v for k, v in sel.items()),
              "%s: the selector does not match the pod labels" % dep["metadata"]["name"])
    gc = check_pod(gw["spec"]["template"]["spec"], serve_help, "gateway")
    wc = check_pod(wk["spec"]["template"]["spec"], worker_help, "worker")
    check(gc and gc["args"][:2] == ["serve", "--role=gateway"], "gateway args must start serve --role=gateway")
    check(wc and wc["args"][0] == "worker", "worker args must start with worker")
    # The Service reaches the gateway pods on their http port.
    gw_labels = gw["spec"]["template"]["metadata"]["labels"]
    check(all(gw_labels.get(k) == v for k, v in svc["spec"]["selector"].items()),
          "the Service does not select the gateway pods")
    check(svc["spec"]["ports"][0]["targetPort"] == "http", "the Service must target port http")
    wk_labels = wk["spec"]["template"]["metadata"]["labels"]
    check(not all(wk_labels.get(k) == v for k, v in svc["spec"]["selector"].items()),
          "the Service must not select worker pods")
    # Workers: a GPU each, tolerated onto GPU nodes, and time to checkpoint on SIGTERM.
    pod = wk["spec"]["template"]["spec"]
    check(str(wc["resources"]["limits"].get("nvidia.com/gpu")) == "1", "a worker needs one GPU")
    check(any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])),
          "workers need the GPU taint's toleration")
    grace = int([a for a in wc["args"] if a.startswith("--grace-seconds=")][0].split("=")[1])
    check(pod["terminationGracePeriodSeconds"] > grace,
          "terminationGracePeriodSeconds (%s) must exceed --grace-seconds (%d)" %
          (pod["terminationGracePeriodSeconds"], grace))
    check("replicas" not in wk["spec"], "KEDA owns the worker replica count")
    check(any(a == "--worker-id=$(KILN_WORKER_ID)" for a in wc["args"]), "workers are named by pod")
    # KEDA: the ScaledObject scales the worker Deployment from the gateways' /v1/autoscale.
    check(so["spec"]["scaleTargetRef"]["name"] == wk["metadata"]["name"],
          "the ScaledObject must target the worker Deployment")
    check(so["spec"]["minReplicaCount"] == 0, "workers scale to zero by default")
    trig = so["spec"]["triggers"][0]
    check(trig["type"] == "metrics-api", "the default trigger is metrics-api")
    url = trig["metadata"]["url"]
    check(url == "http://%s.ml.svc:%d/v1/autoscale" % (svc["metadata"]["name"], svc["spec"]["ports"][0]["port"]),
          "the metrics-api URL must reach the gateway Service: %s" % url)
    check(trig["metadata"]["valueLocation"] == "desired_replicas" and trig["metadata"]["targetValue"] == "1",
          "metrics-api reads desired_replicas with targetValue 1")
    check(secret["stringData"]["KILN_QUEUE"].startswith("amqp://"), "the Secret holds the queue URL")

    # One model's workers: a GJSON query into models[].
    docs = render(renderer, work, dict(base, keda={"model": "tiny-shapes"}))
    so = find(docs, "ScaledObject")
    check(so and so["spec"]["triggers"][0]["metadata"]["valueLocation"] ==
          'models.#(model=="tiny-shapes").desired_replicas', "per-model valueLocation")

    # The RabbitMQ alternative: queue length, credentials from the Secret.
    render(renderer, work, dict(base, keda={"trigger": "rabbitmq"}), expect_error="keda.rabbitmqModel")
    docs = render(renderer, work, dict(base, keda={"trigger": "rabbitmq", "rabbitmqModel": "tiny-shapes"}))
    so, auth = find(docs, "ScaledObject"), find(docs, "TriggerAuthentication")
    if check(so and auth, "the rabbitmq trigger needs a ScaledObject and a TriggerAuthentication"):
        t = so["spec"]["triggers"][0]
        check(t["type"] == "rabbitmq" and t["metadata"]["queueName"] == "kiln.jobs.tiny-shapes"
              and t["metadata"]["mode"] == "QueueLength", "rabbitmq trigger fields: %s" % t)
        check(t["authenticationRef"]["name"] == auth["metadata"]["name"], "authenticationRef")
        check(auth["spec"]["secretTargetRef"][0]["parameter"] == "host", "rabbitmq reads host")

    # Batch variant: a ScaledJob whose workers exit when idle, and no worker Deployment.
    docs = render(renderer, work, dict(base, keda={"scaledJob": {"enabled": True}}))
    sj = find(docs, "ScaledJob")
    check(sj is not None and find(docs, "Deployment", "-worker") is None
          and find(docs, "ScaledObject") is None, "scaledJob replaces the Deployment and ScaledObject")
    if sj:
        pod = sj["spec"]["jobTargetRef"]["template"]["spec"]
        c = check_pod(pod, worker_help, "batch worker")
        check(pod["restartPolicy"] == "Never", "Job pods must not restart in place")
        check(c and "--exit-when-idle=60" in c["args"], "batch workers exit when idle")

    # Without KEDA: a fixed worker count. With an existing Secret: none rendered.
    docs = render(renderer, work, {"keda": {"enabled": False}, "worker": {"replicas": 3},
                                   "connection": {"existingSecret": "mine"}})
    wk = find(docs, "Deployment", "-worker")
    check(wk and wk["spec"]["replicas"] == 3, "keda.enabled=false keeps worker.replicas")
    check(find(docs, "Secret") is None and find(docs, "ScaledObject") is None,
          "existingSecret renders no Secret; keda off renders no ScaledObject")
    env = {e["name"]: e for e in wk["spec"]["template"]["spec"]["containers"][0]["env"]} if wk else {}
    check(env.get("KILN_QUEUE", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "mine",
          "env reads the existing Secret")

    # Models from a volume: mounted read-only where --models points.
    docs = render(renderer, work, dict(base, models={"mountPath": "/models",
                                                     "volume": {"persistentVolumeClaim": {"claimName": "m"}}}))
    for name in ("-gateway", "-worker"):
        d = find(docs, "Deployment", name)
        if not check(d, "models volume render"):
            continue
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        check("--models=/models" in c["args"], "%s: --models follows models.mountPath" % name)
        check(c.get("volumeMounts") == [{"name": "models", "mountPath": "/models", "readOnly": True}],
              "%s: models mount" % name)
        check(pod.get("volumes") == [{"name": "models", "persistentVolumeClaim": {"claimName": "m"}}],
              "%s: models volume" % name)

    # A long release name still gives valid names (each checked by render) for every kind.
    for values in (base, dict(base, keda={"scaledJob": {"enabled": True}})):
        docs = render(renderer, work, values, release="a" * 60)
        check(len(docs) >= 4, "a long release name renders everything")

    # Missing settings fail loudly, naming them.
    render(renderer, work, {}, expect_error="connection.queue")
    render(renderer, work, dict(base, keda={"trigger": "sqs"}), expect_error="keda.trigger")
    render(renderer, work, dict(base, models={"mountPath": "/models"}), expect_error="models.volume")


def gjson(doc, path):
    """The two GJSON forms the chart uses: a plain key, and models.#(model=="x").key."""
    m = re.fullmatch(r'(\w+)\.#\((\w+)=="([^"]*)"\)\.(\w+)', path)
    if m:
        items = [i for i in doc.get(m.group(1), []) if i.get(m.group(2)) == m.group(3)]
        return items[0].get(m.group(4)) if items else None
    return doc.get(path)


def check_autoscale_paths(kiln, models, work):
    data = tempfile.mkdtemp(dir=work)
    p = subprocess.Popen([kiln, "serve", "--models", models, "--data", data, "--port", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killer = threading.Timer(120, p.kill)  # bounds the wait for the "listening" line
    killer.start()
    try:
        port = None
        for line in p.stdout:
            if '"listening"' in line:
                port = json.loads(line)["port"]
                break
        killer.cancel()
        if not check(port, "kiln serve did not start"):
            return
        threading.Thread(target=p.stdout.read, daemon=True).start()  # keep the pipe drained
        with urllib.request.urlopen("http://127.0.0.1:%d/v1/autoscale" % port, timeout=30) as r:
            body = json.load(r)
        model = body["models"][0]["model"]
        for path in ("desired_replicas", 'models.#(model=="%s").desired_replicas' % model):
            v = gjson(body, path)
            check(isinstance(v, (int, float)), "GJSON %s does not find a number in %s" % (path, body))
    finally:
        killer.cancel()
        p.terminate()
        p.wait(timeout=60)


def check_systemd(kiln, help_texts):
    units = os.path.join(ROOT, "deploy", "systemd")
    tmp = tempfile.mkdtemp()
    for name in sorted(os.listdir(units)):
        text = open(os.path.join(units, name)).read()
        exec_start = re.search(r"^ExecStart=(.*)$", text, re.M).group(1).split()
        check("Restart=always" in text, "%s: Restart=always" % name)
        sub = exec_start[1]
        for flag in flag_names(exec_start):
            check(has_flag(help_texts[sub], flag), "%s passes %s, which `kiln %s --help` lacks" % (name, flag, sub))
        with open(os.path.join(tmp, name), "w") as f:
            f.write(text.replace("/opt/kiln/bin/kiln", kiln))
    r = subprocess.run(["systemd-analyze", "verify"] + [os.path.join(tmp, n) for n in sorted(os.listdir(tmp))],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and r.stderr.strip() == "", "systemd-analyze verify: %s" % r.stderr)
    shutil.rmtree(tmp)


def check_terraform(work):
    gcp = os.path.join(ROOT, "deploy", "gcp")
    if shutil.which("terraform"):
        command = ["terraform", "fmt", "-check", "-recursive", "-diff", gcp]
    else:
        # Terraform is on no registry these machines reach: HCL's formatter, which terraform fmt
        # runs, checks the same layout.
        print("deploy_test: terraform is not on PATH; checking the .tf files with tools/hcl-fmt")
        command = [build_go_tool(work, "hcl-fmt"), gcp]
    r = subprocess.run(command, capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "%s: %s%s" % (" ".join(command[:2]), r.stdout, r.stderr))
    main = open(os.path.join(gcp, "main.tf")).read()
    passed = set(re.findall(r"^\s+(\w+)\s+=", re.search(r"templatefile\([^{]*\{(.*?)\}\)", main, re.S).group(1), re.M))
    script = open(os.path.join(gcp, "startup.sh.tftpl")).read()
    used = set(re.findall(r"(?<!\$)\$\{(\w+)\}", script))
    check(used == passed, "startup.sh.tftpl uses %s but main.tf passes %s" % (sorted(used), sorted(passed)))
    declared = set(re.findall(r'^variable "(\w+)"', open(os.path.join(gcp, "variables.tf")).read(), re.M))
    referenced = set(re.findall(r"\bvar\.(\w+)", main + open(os.path.join(gcp, "versions.tf")).read()))
    check(referenced <= declared, "undeclared variables: %s" % sorted(referenced - declared))
    check(declared <= referenced, "unused variables: %s" % sorted(declared - referenced))
    for resource in ("google_compute_instance_template", "google_compute_instance_group_manager",
                     "google_compute_autoscaler", "google_compute_health_check",
                     "google_compute_backend_service", "google_compute_global_forwarding_rule"):
        check('resource "%s"' % resource in main, "main.tf lacks %s" % resource)
    # The rendered startup script is valid bash and starts kiln with flags kiln has.
    rendered = re.sub(r"(?<!\$)\$\{(\w+)\}", "X", script).replace("$${", "${")
    r = subprocess.run(["bash", "-n"], input=rendered, capture_output=True, text=True)
    check(r.returncode == 0, "startup script: bash -n: %s" % r.stderr)


def main():
    kiln, models, work = (os.path.abspath(a) for a in sys.argv[1:4])
    os.makedirs(work, exist_ok=True)
    helps = {sub: subprocess.run([kiln, sub, "--help"], capture_output=True, text=True).stdout
             for sub in ("serve", "worker")}
    renderer = build_go_tool(work, "chart-render")
    check_chart(renderer, work, helps["serve"], helps["worker"])
    check_autoscale_paths(kiln, models, work)
    check_systemd(kiln, helps)
    check_terraform(work)
    if FAILURES:
        print("%d deploy check(s) failed" % len(FAILURES))
        return 1
    print("deploy checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
