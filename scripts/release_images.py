"""Build and push every chiml image for a release with docker buildx (the release workflow).

Reads services/images.yaml through chiml.images (registry from $CHIML_IMAGE_REGISTRY or the
file, tag = chiml's version), builds each image and variant for its `platforms`, FROM the base
pinned by digest (--base-digest), pushes, and writes every pushed reference with its digest to
--digests (JSON), which the workflow publishes with the release. Images marked `unbuildable`
(TensorRT: NVIDIA's registry) are listed with their reason instead.

The release workflow builds one tag per job (the CUDA trainer variants each need most of a
runner's disk): `--units` prints every tag as a selector, JSON, for its job matrix, and the
digests files of the jobs are merged with `--merge`.

Selectors: NAME (the image and all its variants), NAME: (its main tag only), NAME:VARIANT.
Usage: release_images.py --base-digest sha256:... --digests digests.json [--no-push] [SELECTOR...]
       release_images.py --units
       release_images.py --merge digests.json PART.json...
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from chiml import images


def units(catalog: images.Catalog) -> list[str]:
    """One selector per tag: what one job of the workflow's matrix builds."""
    return [unit for image in catalog.images.values()
            for unit in [f"{image.name}:", *(f"{image.name}:{v.name}" for v in image.variants)]]


def select(catalog: images.Catalog, selectors: list[str]) -> list[tuple[images.Image, list[images.Variant | None]]]:
    """(image, the variants to build, None = the main tag) for each selector (all images: none given)."""
    chosen: list[tuple[images.Image, list[images.Variant | None]]] = []
    for selector in selectors or list(catalog.images):
        name, colon, wanted = selector.partition(":")
        image = catalog.get(name)
        if not colon:
            chosen.append((image, [None, *image.variants]))
        elif not wanted:
            chosen.append((image, [None]))
        else:
            variant = next((v for v in image.variants if v.name == wanted), None)
            if variant is None:
                known = ", ".join(v.name for v in image.variants) or "none"
                raise SystemExit(f"{name} has no variant {wanted!r} (its variants: {known})")
            chosen.append((image, [variant]))
    return chosen


def merge(out: Path, parts: list[Path]) -> int:
    """One digests record from the per-job records."""
    record: dict[str, Any] = {"base": None, "images": {}, "not_built": {}}
    for part in parts:
        data = json.loads(part.read_text(encoding="utf-8"))
        record["base"] = record["base"] or data.get("base")
        record["images"].update(data.get("images", {}))
        record["not_built"].update(data.get("not_built", {}))
    out.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-digest", help="digest of services/images.yaml's base.image")
    parser.add_argument("--digests", type=Path)
    parser.add_argument("--no-push", action="store_true", help="build only (pull requests)")
    parser.add_argument("--units", action="store_true", help="print one selector per tag (JSON) and exit")
    parser.add_argument("--merge", type=Path, metavar="OUT", help="merge the digests files given as arguments")
    parser.add_argument("names", nargs="*", metavar="SELECTOR")
    ns = parser.parse_args()
    catalog = images.load_catalog()
    if ns.units:
        print(json.dumps(units(catalog)))
        return 0
    if ns.merge:
        return merge(ns.merge, [Path(n) for n in ns.names])
    if not ns.base_digest or not ns.digests:
        parser.error("--base-digest and --digests are required to build")
    base = f"{catalog.base_image.rsplit(':', 1)[0]}@{ns.base_digest}"
    record: dict[str, Any] = {"base": base, "images": {}, "not_built": {}}
    for image, variants in select(catalog, ns.names):
        if image.unbuildable:
            record["not_built"][image.name] = image.unbuildable
            print(f"not built: {image.name}: {image.unbuildable}", flush=True)
            continue
        for variant in variants:
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
            record["images"][ref] = {"digest": digest, "platforms": list(platforms)}
            print(f"{ref}@{digest}" if digest else ref, flush=True)
    ns.digests.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
