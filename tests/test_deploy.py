"""deploy/: each file checked by the strongest real validator installed here (devstack/stack install brings them).

- the container image: dockerfile-parse (its structure) and dockerfilelint (npm); the hashed lock covers
  what pyproject.toml asks for;
- the Kubernetes CronJob and Job: the Kubernetes JSON schemas (kubernetes-validate, strict: no unknown field);
- the systemd service and timer: ``systemd-analyze verify`` in a root of their own;
- the CI workflow: actionlint;
- the alert rules: ``promtool check rules`` and ``promtool test rules``.

Every route starts the scheduled run with the same kfm-maint arguments (SCHEDULED);
tests/test_scheduled_run.py runs that command against the local stack.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import ROOT, stack_binary

DEPLOY = ROOT / "deploy"
SCHEDULED = ["check", "--", "--kfm-require-all", "-p", "no:cacheprovider"]
"""The scheduled production run, as kfm-maint arguments: the same in the image, the CronJob and the unit."""
K8S_VERSIONS = ("1.30.0", "1.37.0")


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, **kwargs)  # type: ignore[call-overload]


# --------------------------------------------------------------------------- the container image
@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    parser = DockerfileParser(fileobj=(DEPLOY / "container" / "Dockerfile").open("rb"))
    return parser


def test_dockerfile_lints_clean_and_the_linter_is_live(tmp_path: Path) -> None:
    lint = stack_binary("dockerfilelint")
    res = run([lint, "-o", "json", str(DEPLOY / "container" / "Dockerfile")])
    report = json.loads(res.stdout)
    assert res.returncode == 0 and report["totalIssues"] == 0, res.stdout
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    flagged = json.loads(run([lint, "-o", "json", str(bad)]).stdout)
    assert {i["title"] for i in flagged["files"][0]["issues"]} >= {"Base Image Latest Tag"}


def test_the_image_is_pinned_non_root_and_installs_the_wheel_and_the_lock(dockerfile: DockerfileParser) -> None:
    instructions = dockerfile.structure
    bases = [i["value"].split()[0] for i in instructions if i["instruction"] == "FROM"]
    assert bases and all(re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", b) for b in bases), \
        bases
    final = instructions[max(n for n, i in enumerate(instructions) if i["instruction"] == "FROM"):]
    runs = " ".join(i["value"] for i in final if i["instruction"] == "RUN")
    assert "--require-hashes --no-deps -r /opt/kfm-ops-install/requirements.txt" in runs
    assert re.search(r"pip install --no-cache-dir --no-deps /opt/kfm-ops-install/wheels/\*\.whl", runs)
    copies = [i["value"] for i in final if i["instruction"] == "COPY"]
    assert "deploy/container/requirements.txt /opt/kfm-ops-install/requirements.txt" in copies
    assert any(c.startswith("--from=build /wheels") for c in copies)
    users = [i["value"] for i in final if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root") and users[-1].split(":")[0].isdigit()
    env = dockerfile.envs
    assert env["KFM_SECRETS_DIR"] == "/run/secrets/kfm"
    assert json.loads(next(i["value"] for i in final if i["instruction"] == "ENTRYPOINT")) == ["kfm-maint"]
    assert json.loads(next(i["value"] for i in final if i["instruction"] == "CMD")) == SCHEDULED
    build = " ".join(i["value"] for i in instructions[:len(instructions) - len(final)] if i["instruction"] == "RUN")
    assert "--require-hashes -r /src/build-requirements.txt" in build and "--no-build-isolation" in build


def _locked(path: Path) -> dict[str, str]:
    text = path.read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", text, re.M))
    blocks = re.split(r"^(?=[A-Za-z0-9_.-]+==)", text, flags=re.M)[1:]
    assert all("--hash=sha256:" in b for b in blocks), "every pin carries its hashes"
    assert not re.search(r"^[A-Za-z0-9_.-]+(>=|<=|~=|>|<)", text, re.M), "only exact pins"
    return {canonicalize_name(k): v for k, v in pins.items()}


def test_the_lock_satisfies_pyproject_and_is_closed() -> None:
    import tomllib

    locked = _locked(DEPLOY / "container" / "requirements.txt")
    wanted = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is not in deploy/container/requirements.txt (run deploy/container/lock.sh)"
        assert req.specifier.contains(locked[name], prereleases=True), f"{req} vs locked {locked[name]}"
    env = default_environment() | {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux"}
    missing = []
    for name in locked:  # the closure, from the metadata of the packages installed here
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for raw in requires:
            req = Requirement(raw)
            applies = req.marker is None or req.marker.evaluate(env | {"extra": ""})
            if applies and canonicalize_name(req.name) not in locked:
                missing.append(f"{name} needs {req.name}")
    assert not missing, missing
    assert set(_locked(DEPLOY / "container" / "build-requirements.txt")) >= {"setuptools", "wheel"}


# --------------------------------------------------------------------------- Kubernetes
def _manifest(name: str) -> dict:
    return yaml.safe_load((DEPLOY / "kubernetes" / name).read_text())


@pytest.mark.parametrize("name", ["cronjob-opschecks.yaml", "job-cache-rebuild.yaml", "job-reindex-coordinator.yaml",
                                  "job-reindex-partitions.yaml"])
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_validate_against_the_schemas(name: str, version: str) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(_manifest(name), version, strict=True)  # raises on any schema error


def test_the_strict_schema_catches_a_typo() -> None:
    import kubernetes_validate

    broken = _manifest("cronjob-opschecks.yaml")
    broken["spec"]["concurencyPolicy"] = broken["spec"].pop("concurrencyPolicy")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def _pod(manifest: dict) -> dict:
    spec = manifest["spec"]
    job = spec["jobTemplate"]["spec"] if manifest["kind"] == "CronJob" else spec
    return job["template"]["spec"]


def _secure_pod_with_secrets(manifest: dict) -> dict:
    pod = _pod(manifest)
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"requests", "limits"} <= set(container["resources"])
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret = next(n for n, v in volumes.items() if "secret" in v)
    assert mounts[secret]["mountPath"] == env["KFM_SECRETS_DIR"] and mounts[secret]["readOnly"] is True
    assert volumes[secret]["secret"]["defaultMode"] & 0o007 == 0, "the settings are not world-readable"
    assert env["KFM_METRICS__PUSHGATEWAY_URL"].startswith("http")
    return container


def test_the_cronjob_runs_the_scheduled_checks_once_at_a_time_within_a_deadline() -> None:
    cron = _manifest("cronjob-opschecks.yaml")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    assert 0 < job["activeDeadlineSeconds"] <= 3600 and job["backoffLimit"] == 0
    container = _secure_pod_with_secrets(cron)
    assert container["args"] == SCHEDULED and "command" not in container, "the image's entrypoint: kfm-maint"


def test_the_job_runs_one_confirmed_action_never_retried() -> None:
    job = _manifest("job-cache-rebuild.yaml")
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] > 0
    args = _secure_pod_with_secrets(job)["args"]
    assert args[:2] == ["cache", "rebuild"]
    assert args[args.index("--environment") + 1] == "production" and args[args.index("--confirm") + 1] == "PRODUCTION"
    from maintenance.cli import build_parser

    parsed = build_parser().parse_args(args)
    assert (parsed.command, parsed.subcommand, parsed.confirm) == ("cache", "rebuild", "PRODUCTION")


def test_the_partitioned_rebuild_is_a_coordinator_and_an_indexed_job_of_its_partitions() -> None:
    """The Indexed Job runs one worker per partition (the completion index picks it), as many as the coordinator
    waits for; a failed index is retried alone; the coordinator is never retried and outlives its wait."""
    from maintenance.cli import build_parser

    coordinator, workers = _manifest("job-reindex-coordinator.yaml"), _manifest("job-reindex-partitions.yaml")
    lead = build_parser().parse_args(_secure_pod_with_secrets(coordinator)["args"])
    assert coordinator["spec"]["backoffLimit"] == 0 and lead.partitions > 1 and lead.partition is None
    assert coordinator["spec"]["activeDeadlineSeconds"] > lead.partition_wait
    spec = workers["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == lead.partitions
    assert spec["backoffLimitPerIndex"] >= 1 and spec["maxFailedIndexes"] == 0
    container = _secure_pod_with_secrets(workers)
    (partition,) = [e for e in container["env"] if e["name"] == "PARTITION"]
    assert partition["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    for index in range(spec["completions"]):  # what each pod runs, once Kubernetes expands $(PARTITION)
        args = [a.replace("$(PARTITION)", str(index)) for a in container["args"]]
        worker = build_parser().parse_args(args)
        assert (worker.partition.index, worker.partition.count) == (index, lead.partitions)
        assert (worker.targets, worker.confirm) == (lead.targets, "PRODUCTION")


# --------------------------------------------------------------------------- systemd
def _exec_start() -> list[str]:
    text = (DEPLOY / "systemd" / "kfm-opschecks.service").read_text()
    return shlex.split(re.search(r"^ExecStart=(.+)$", text, re.M)[1])  # type: ignore[index]


def _verify(root: Path, units: list[Path]) -> subprocess.CompletedProcess[str]:
    (root / "etc/systemd/system").mkdir(parents=True, exist_ok=True)
    (root / "usr/lib/systemd").mkdir(parents=True, exist_ok=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True)
    for unit in units:
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
    executable = root / _exec_start()[0].lstrip("/")
    executable.parent.mkdir(parents=True, exist_ok=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    return run([stack_binary("systemd-analyze"), "verify", f"--root={root}",
                *[f"/etc/systemd/system/{u.name}" for u in units]])


def test_systemd_units_verify_clean(tmp_path: Path) -> None:
    units = [DEPLOY / "systemd" / "kfm-opschecks.service", DEPLOY / "systemd" / "kfm-opschecks.timer"]
    res = _verify(tmp_path / "root", units)
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), res.stdout + res.stderr
    broken = tmp_path / "kfm-opschecks.timer"
    broken.write_text(units[1].read_text().replace("OnCalendar=", "OnCalender="))
    res = _verify(tmp_path / "root2", [units[0], broken])
    assert res.returncode != 0 and "OnCalender" in res.stderr, "systemd-analyze catches a typo"


def test_the_unit_runs_the_scheduled_checks_with_a_textfile() -> None:
    argv = _exec_start()
    assert argv[0].endswith("/kfm-maint") and argv[1] == "check"
    metrics = argv.index("--metrics-file")
    assert argv[metrics + 1].endswith(".prom")
    assert [argv[1], *argv[metrics + 2:]] == SCHEDULED
    text = (DEPLOY / "systemd" / "kfm-opschecks.service").read_text()
    assert "Environment=KFM_SECRETS_DIR=" in text and re.search(r"^User=(?!root)\S+", text, re.M)
    assert re.search(r"^ReadWritePaths=.*" + re.escape(str(Path(argv[metrics + 1]).parent)), text, re.M)
    timer = (DEPLOY / "systemd" / "kfm-opschecks.timer").read_text()
    assert "Unit=kfm-opschecks.service" in timer and "OnCalendar=hourly" in timer


# --------------------------------------------------------------------------- CI workflow
def test_the_ci_workflow_passes_actionlint_and_actionlint_is_live(tmp_path: Path) -> None:
    actionlint = stack_binary("actionlint")
    workflow = DEPLOY / "ci" / "github-actions-smoke.yml"
    res = run([actionlint, "-no-color", str(workflow)])
    assert res.returncode == 0, res.stdout + res.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text(workflow.read_text().replace("timeout-minutes:", "timeout-minute:"))
    res = run([actionlint, "-no-color", str(bad)])
    assert res.returncode == 1 and "timeout-minute" in res.stdout
    steps = yaml.safe_load(workflow.read_text())["jobs"]["smoke"]["steps"]
    smoke = next(s["run"] for s in steps if "kfm-maint smoke" in s.get("run", ""))
    assert "--junit-xml" in smoke


# --------------------------------------------------------------------------- alert rules
def test_the_alert_rules_load_and_their_unit_tests_pass() -> None:
    promtool = stack_binary("promtool")
    check = run([promtool, "check", "rules", str(DEPLOY / "prometheus" / "kfm-ops.rules.yml")])
    assert check.returncode == 0, check.stdout + check.stderr
    tested = run([promtool, "test", "rules", "kfm-ops.rules.test.yml"], cwd=DEPLOY / "prometheus")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
