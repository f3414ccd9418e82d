"""Generate the Python stubs for proto/ into the `conductor` package.

This is the only code generator entry point. Run it after editing a .proto file:

    python scripts/gen_protos.py          # write the stubs
    python scripts/gen_protos.py --check  # exit 1 if the committed stubs are out of date

The .proto files live at the import path they generate (proto/conductor/v1/x.proto ->
conductor.v1.x_pb2), so the generated imports are correct without any rewriting.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE = "conductor"
INIT_TEXT = '"""Generated from proto/ by scripts/gen_protos.py; do not edit."""\n'


def generate(out: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    bin_dir = Path(sys.executable).parent
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    subprocess.run(cmd, check=True, cwd=PROTO_ROOT)
    for package_dir in {out / Path(p).parent for p in protos} | {out / PACKAGE}:
        (package_dir / "__init__.py").write_text(INIT_TEXT)
        (package_dir / "py.typed").write_text("")


def differences(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    found = [*cmp.left_only, *cmp.right_only, *cmp.diff_files]
    for name, sub in cmp.subdirs.items():
        found += [f"{name}/{d}" for d in differences(Path(sub.left), Path(sub.right))]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the stubs are stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = Path(tmp) / PACKAGE
        target = ROOT / PACKAGE
        if args.check:
            stale = differences(fresh, target) if target.exists() else ["<missing>"]
            if stale:
                print(f"generated stubs are stale: {stale}; run scripts/gen_protos.py")
                return 1
            print("generated stubs are up to date")
            return 0
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(fresh, target)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
