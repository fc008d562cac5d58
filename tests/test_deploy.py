"""deploy/: the container image, the KubeRay manifests and the Ray cluster launcher config carry
what KubeRay and Ray require, agree with each other, and install the project the README's way.

No Docker engine or Kubernetes here: the files are parsed and checked field by field, the
launcher config by Ray's own validator, and the commands they run by the project's own CLI
parser.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import ray
import yaml
from packaging.requirements import Requirement

from pcam_scan.cli import build_parser
from tests.conftest import REPO_ROOT
from tests.test_readme import _readme_commands

DEPLOY = REPO_ROOT / "deploy"
Doc = dict[str, Any]


def load_yaml(relative: str) -> Doc:
    doc = yaml.safe_load((DEPLOY / relative).read_text())
    assert isinstance(doc, dict), f"{relative} is not one YAML mapping"
    return doc


@pytest.fixture(scope="module")
def raycluster() -> Doc:
    return load_yaml("kuberay/raycluster.yaml")


@pytest.fixture(scope="module")
def rayjob() -> Doc:
    return load_yaml("kuberay/rayjob.yaml")


@pytest.fixture(scope="module")
def launcher() -> Doc:
    return load_yaml("cluster.yaml")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), " ".join(rest.split())))
    return instructions


def readme_install_command() -> str:
    """The install part of the README's first set-up command (what CI runs too)."""
    return _readme_commands()[0].split(" && ", 1)[0]


def cluster_specs(raycluster: Doc, rayjob: Doc) -> dict[str, Doc]:
    return {"RayCluster": raycluster["spec"], "RayJob": rayjob["spec"]["rayClusterSpec"]}


def containers(spec: Doc) -> dict[str, Doc]:
    """Every Ray container of a RayCluster spec, named by its group ('head' or the group name)."""
    groups = {"head": spec["headGroupSpec"], **{g["groupName"]: g for g in spec["workerGroupSpecs"]}}
    found = {}
    for name, group in groups.items():
        pod_containers = group["template"]["spec"]["containers"]
        assert len(pod_containers) == 1, f"{name}: one Ray container per pod"
        found[name] = pod_containers[0]
    return found


def gpu_groups(spec: Doc) -> list[Doc]:
    return [
        g
        for g in spec["workerGroupSpecs"]
        if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"].get("limits", {})
    ]


def launcher_env(launcher: Doc) -> set[str]:
    """The NAME=value words the launcher's `docker run` options set (`-e` / `--env`)."""
    options = [word for option in launcher["docker"]["run_options"] for word in shlex.split(option)]
    return {options[i + 1] for i, word in enumerate(options[:-1]) if word in ("-e", "--env")}


def parse_cli(argv: list[str], where: str) -> argparse.Namespace:
    """`pcam-scan ARGV` parsed by the real CLI parser; a test failure naming `where` if not."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit:  # argparse's way to refuse an unknown option or a missing argument
        pytest.fail(f"{where}: `pcam-scan {shlex.join(argv)}` is not a valid command line")


def image_tag(image: str) -> str:
    return image.rsplit(":", 1)[1]


# -- the container image --------------------------------------------------------------------


def test_image_installs_the_project_with_the_readme_install_step_as_a_non_root_user() -> None:
    install = readme_install_command()
    assert install == "bash install.sh"
    steps = dockerfile_instructions()
    keywords = [k for k, _ in steps]
    base = next(args for k, args in steps if k == "FROM")
    assert base.startswith("nvidia/cuda:") and "runtime" in base, base
    runs = [args for k, args in steps if k == "RUN"]
    assert install in runs, f"no `RUN {install}` in deploy/Dockerfile"
    install_at = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and a == install)
    users = [(i, args) for i, (k, args) in enumerate(steps) if k == "USER"]
    assert users, "the image must switch to a non-root user"
    user_before_install = [u for i, u in users if i < install_at]
    assert user_before_install and user_before_install[-1] not in ("root", "0")
    assert users[-1][1] not in ("root", "0")
    # the project's files are in the image before the install step runs
    assert any(k == "COPY" for k, _ in steps[:install_at])
    # the venv that install.sh made comes first on PATH: `ray`, `pcam-scan` are the project's
    workdir = PurePosixPath([a for k, a in steps[:install_at] if k == "WORKDIR"][-1])
    env = " ".join(a for k, a in steps if k == "ENV").split()
    assert any(e.startswith(f"PATH={workdir / '.venv' / 'bin'}:") for e in env)
    # the cluster launcher places its mounts (the Ray token) under the image's HOME
    user = users[-1][1]
    assert f"HOME=/home/{user}" in env
    # no ENTRYPOINT: KubeRay and the cluster launcher run their own commands in the image
    assert "ENTRYPOINT" not in keywords and "CMD" in keywords


def test_image_build_context_leaves_local_environments_out() -> None:
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", "**/node_modules", ".git"} <= set(ignored)


# -- KubeRay --------------------------------------------------------------------------------


def test_manifests_are_kuberay_v1_objects_for_the_installed_ray(raycluster: Doc, rayjob: Doc) -> None:
    assert (raycluster["apiVersion"], raycluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert (rayjob["apiVersion"], rayjob["kind"]) == ("ray.io/v1", "RayJob")
    for owner, spec in cluster_specs(raycluster, rayjob).items():
        assert spec["rayVersion"] == ray.__version__, owner
        # the fields KubeRay's types require (json tags without omitempty)
        head = spec["headGroupSpec"]
        assert isinstance(head["rayStartParams"], dict) and head["template"]["spec"]["containers"], owner
        assert spec["workerGroupSpecs"], owner
        for group in spec["workerGroupSpecs"]:
            assert {"groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"} <= set(group), owner
            assert 0 <= group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]


def test_the_image_gets_the_ray_version_the_manifests_name() -> None:
    """The image installs Ray from pyproject.toml: only an exact pin makes it the version that
    rayVersion names and that clients submit with."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    (ray_requirement,) = [Requirement(d) for d in project["dependencies"] if Requirement(d).name == "ray"]
    assert str(ray_requirement.specifier) == f"=={ray.__version__}"


def test_clusters_have_a_cpu_head_and_one_gpu_workers(raycluster: Doc, rayjob: Doc) -> None:
    for owner, spec in cluster_specs(raycluster, rayjob).items():
        pods = containers(spec)
        head_resources = pods["head"]["resources"]
        assert "nvidia.com/gpu" not in head_resources.get("limits", {}), owner
        # no work is scheduled on the head: reads run next to the GPU they feed
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0", owner
        groups = gpu_groups(spec)
        assert groups, f"{owner}: no GPU worker group"
        for group in groups:
            resources = group["template"]["spec"]["containers"][0]["resources"]
            # one GPU per pod: one model actor per pod; extended resources need requests == limits
            assert resources["limits"]["nvidia.com/gpu"] == 1, owner
            assert resources["requests"]["nvidia.com/gpu"] == 1, owner
            assert int(resources["limits"]["cpu"]) >= 2, f"{owner}: read tasks need CPUs beside the GPU"


def test_long_lived_cluster_autoscales_its_gpu_workers(raycluster: Doc) -> None:
    spec = raycluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert any(g["maxReplicas"] > g["minReplicas"] for g in gpu_groups(spec))


def test_token_authentication_is_enabled_from_a_secret(raycluster: Doc, rayjob: Doc) -> None:
    secrets = set()
    for owner, spec in cluster_specs(raycluster, rayjob).items():
        auth = spec["authOptions"]
        assert auth["mode"] == "token", owner
        secrets.add(auth["secretName"])
        # no token written into the manifests themselves
        for container in containers(spec).values():
            assert all(e["name"] != "RAY_AUTH_TOKEN" or "valueFrom" in e for e in container.get("env", []))
    assert len(secrets) == 1, "the RayCluster and the RayJob share one token Secret"


def test_every_ray_pod_gets_the_store_credentials_and_the_shared_volume(raycluster: Doc, rayjob: Doc) -> None:
    for owner, spec in cluster_specs(raycluster, rayjob).items():
        groups = {"head": spec["headGroupSpec"], **{g["groupName"]: g for g in spec["workerGroupSpecs"]}}
        for name, group in groups.items():
            pod = group["template"]["spec"]
            container = pod["containers"][0]
            secret_refs = {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
            assert "pcam-scan-s3" in secret_refs, f"{owner}/{name}: the driver and the workers open the store"
            claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
            mounts = {m["mountPath"]: claims[m["name"]] for m in container["volumeMounts"]}
            assert mounts.get("/data") == "pcam-scan-data", f"{owner}/{name}"
            assert pod["securityContext"]["runAsNonRoot"] is True


def test_the_pvc_is_shared_by_all_pods() -> None:
    pvc = load_yaml("kuberay/data-pvc.yaml")
    assert (pvc["apiVersion"], pvc["kind"], pvc["metadata"]["name"]) == (
        "v1",
        "PersistentVolumeClaim",
        "pcam-scan-data",
    )
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_rayjob_runs_a_valid_scan_command_on_the_shared_volume_and_shuts_down(rayjob: Doc) -> None:
    spec = rayjob["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "pcam-scan"
    args = parse_cli(argv[1:], "deploy/kuberay/rayjob.yaml")
    assert args.command == "scan" and args.address == "auto" and not args.in_process
    assert args.store.startswith("s3://")
    # the slides and the checkpoint are read by the driver on the head and by the workers
    mount_paths = {
        name: [PurePosixPath(m["mountPath"]) for m in c["volumeMounts"]]
        for name, c in containers(spec["rayClusterSpec"]).items()
    }
    for path in [*args.slides, args.model]:
        for name, mounts in mount_paths.items():
            assert any(PurePosixPath(path).is_relative_to(m) for m in mounts), f"{path} not mounted in {name}"


def test_rayjob_cluster_matches_the_long_lived_cluster(raycluster: Doc, rayjob: Doc) -> None:
    """The two cluster specs are written out twice (plain manifests): they must not drift."""
    long_lived, batch = (containers(spec) for spec in cluster_specs(raycluster, rayjob).values())
    assert long_lived.keys() == batch.keys()
    for name in long_lived:
        for field in ("image", "envFrom", "resources"):
            assert long_lived[name][field] == batch[name][field], f"{name}.{field}"
    assert raycluster["spec"]["authOptions"] == rayjob["spec"]["rayClusterSpec"]["authOptions"]


# -- Ray cluster launcher -------------------------------------------------------------------


def test_launcher_config_passes_rays_own_validation(launcher: Doc) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(launcher)))
    broken = copy.deepcopy(launcher)
    broken["available_node_types"]["gpu_worker"]["resourcez"] = {}
    with pytest.raises(Exception, match="resourcez"):
        validate_config(prepare_config(broken))


def test_launcher_has_a_cpu_head_and_autoscaling_gpu_workers_in_the_image(launcher: Doc) -> None:
    assert launcher["cluster_name"] and launcher["provider"]["type"]
    types = launcher["available_node_types"]
    assert launcher["head_node_type"] in types
    assert types[launcher["head_node_type"]]["resources"].get("GPU", 0) == 0
    gpu = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu and any(t["max_workers"] > t.get("min_workers", 0) for t in gpu)
    assert launcher["docker"]["image"]


def test_launcher_setup_is_the_readme_install_step_in_the_images_project(launcher: Doc) -> None:
    steps = dockerfile_instructions()
    workdir = [args for k, args in steps if k == "WORKDIR"][-1]
    assert launcher["setup_commands"] == [f"cd {workdir} && {readme_install_command()}"]


def test_launcher_runs_every_node_container_with_token_authentication(launcher: Doc) -> None:
    # every command runs in the container (ray start, the autoscaler, `ray exec`): its
    # environment enables token authentication
    assert "RAY_AUTH_MODE=token" in launcher_env(launcher)
    # the token made on the operator's machine goes to Ray's default token path on each node
    assert launcher["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def test_gpu_workers_keep_the_scan_s_worker_pool(raycluster: Doc, rayjob: Doc, launcher: Doc) -> None:
    from cluster.sizing import worker_pool_size

    for owner, spec in cluster_specs(raycluster, rayjob).items():
        for group in gpu_groups(spec):
            container = group["template"]["spec"]["containers"][0]
            env = {e["name"]: e["value"] for e in container.get("env", [])}
            cpus = int(container["resources"]["limits"]["cpu"])
            assert env.get("RAY_num_workers_soft_limit") == str(worker_pool_size(cpus)), owner
    gpu_cpus = max(
        int(t["resources"]["CPU"]) for t in launcher["available_node_types"].values() if t["resources"].get("GPU")
    )
    assert f"RAY_num_workers_soft_limit={worker_pool_size(gpu_cpus)}" in launcher_env(launcher)


# -- all together ---------------------------------------------------------------------------


def test_one_image_everywhere_tagged_with_the_project_version(raycluster: Doc, rayjob: Doc, launcher: Doc) -> None:
    images = {launcher["docker"]["image"]}
    for spec in cluster_specs(raycluster, rayjob).values():
        images |= {c["image"] for c in containers(spec).values()}
    assert len(images) == 1
    assert image_tag(images.pop()) == importlib.metadata.version("pcam-scan")


def deploy_readme_commands() -> list[list[str]]:
    """Every `pcam-scan ...` command in deploy/README.md's shell blocks, as argv."""
    text = (DEPLOY / "README.md").read_text()
    commands = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and (words[0] in ("kubectl", "exec", "-it", "--") or words[0].startswith("$")):
                words = words[1:]  # `kubectl exec -it $HEAD -- pcam-scan ...` runs pcam-scan
            if words and Path(words[0]).name == "pcam-scan":
                end = next((i for i, w in enumerate(words) if w in ("|", "&&", ";", ">", "&")), len(words))
                commands.append(words[1:end])
    return commands


def test_deploy_readme_commands_parse_with_the_cli() -> None:
    commands = deploy_readme_commands()
    assert {c[0] for c in commands} >= {"submit", "status", "logs", "scan", "view"}
    for argv in commands:
        parse_cli(argv, "deploy/README.md")
