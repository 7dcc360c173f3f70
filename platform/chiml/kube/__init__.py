"""The Kubernetes platform layer: Helm releases (pyhelm3), generated secrets, KServe endpoints.

Entry points: :func:`chiml.kube.installer.install_platform` / ``uninstall_platform`` (used by the
kubernetes and chameleon profiles) and :class:`chiml.kube.endpoints.KServeEndpoints`.
"""
