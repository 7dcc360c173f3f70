# Run in each builder stage after pip: chiml_serving and chiml_contract into the venv as plain
# package files (no build step; their dependencies are the pinned requirements), then drop what a
# server never runs:
# pip/setuptools themselves, caches, bytecode and the wheels' test suites.
set -eu
site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
for package in chiml_serving chiml_contract; do
  if [ -d "/opt/src/$package" ]; then cp -r "/opt/src/$package" "$site/"; fi
done
/opt/venv/bin/python -m pip uninstall --yes --quiet pip setuptools wheel 2>/dev/null || true
find /opt/venv -depth \( -name __pycache__ -o -name '*.pyc' \) -exec rm -rf {} +
find "$site" -depth -type d -name tests -path '*/site-packages/*/*' -exec rm -rf {} +
# kserve imports the synchronous Kubernetes client (kserve.api) but never its asyncio twin (41 MB)
rm -rf "$site/kubernetes/aio"
# Pillow comes with kserve for image payloads; chiml's runtimes take numeric tensors and never
# import it (21 MB)
rm -rf "$site/PIL" "$site/pillow.libs" "$site"/pillow-*.dist-info
# No `strip` of the wheels' shared libraries: auditwheel-repaired (patchelf'd) libraries such as
# numpy's OpenBLAS no longer load once stripped ("ELF load command ... not page-aligned").
rm -rf /root/.cache
