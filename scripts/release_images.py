"""Build and push every chiml image for a release with docker buildx (the release workflow).

Reads services/images.yaml through chiml.images (registry from $CHIML_IMAGE_REGISTRY or the
file, tag = chiml's version), builds each image and variant for its `platforms`, FROM the base
pinned by digest (--base-digest), pushes, and writes every pushed reference with its digest to
--digests (JSON), which the workflow publishes with the release. Images marked `unbuildable`
(TensorRT: NVIDIA's registry) are listed with their reason instead.

Usage: release_images.py --base-digest sha256:... --digests digests.json [--no-push] [NAME...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from chiml import images


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-digest", required=True, help="digest of services/images.yaml's base.image")
    parser.add_argument("--digests", type=Path, required=True)
    parser.add_argument("--no-push", action="store_true", help="build only (pull requests)")
    parser.add_argument("names", nargs="*")
    ns = parser.parse_args()
    catalog = images.load_catalog()
    base = f"{catalog.base_image.rsplit(':', 1)[0]}@{ns.base_digest}"
    record: dict[str, object] = {"base": base, "images": {}, "not_built": {}}
    for image in [catalog.get(n) for n in ns.names] if ns.names else catalog.images.values():
        if image.unbuildable:
            record["not_built"][image.name] = image.unbuildable  # type: ignore[index]
            print(f"not built: {image.name}: {image.unbuildable}", flush=True)
            continue
        for variant in [None, *image.variants]:
            ref = catalog.ref(image.name, variant.name if variant else None)
            platforms = variant.platforms if variant else image.platforms
            args = {"BASE_IMAGE": base, **image.args, **(variant.args if variant else {})}
            with tempfile.TemporaryDirectory() as tmp:
                meta = Path(tmp, "meta.json")
                command = ["docker", "buildx", "build", "-f", str(image.dockerfile), "-t", ref,
                           "--platform", ",".join(platforms), "--metadata-file", str(meta),
                           "--provenance=false", "--push" if not ns.no_push else "--output=type=cacheonly"]
                if image.target:
                    command += ["--target", image.target]
                for key, value in args.items():
                    command += ["--build-arg", f"{key}={value}"]
                command.append(str(image.context))
                print("+", " ".join(command), flush=True)
                subprocess.run(command, check=True)
                digest = json.loads(meta.read_text()).get("containerimage.digest", "") if meta.exists() else ""
            record["images"][ref] = {"digest": digest, "platforms": list(platforms)}  # type: ignore[index]
            print(f"{ref}@{digest}" if digest else ref, flush=True)
    ns.digests.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
