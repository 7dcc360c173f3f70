"""The Terraform wrapper against the *real* terraform binary.

A configuration of ``terraform_data`` resources needs no provider download, so init, apply,
output and destroy run for real here, checking the wrapper against Terraform's actual JSON
stream, diagnostics and exit codes (the fake used by the orchestration tests copies them).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from chiml.chameleon.terraform import Terraform
from chiml.errors import ChimlError, NotSupportedError

pytestmark = pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform not on PATH (`make tools`)")

CONFIG = """
variable "size" {
  type        = number
  description = "how many"

  validation {
    condition     = var.size >= 0 && var.size < 5
    error_message = "size must be between 0 and 4."
  }
}

resource "terraform_data" "node" {
  count = var.size
  input = "node-${count.index}"
}

module "extra" {
  source = "./extra"
}

output "nodes" {
  description = "names"
  value       = terraform_data.node[*].output
}
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "main.tf").write_text(CONFIG)
    # a local module, like the root configurations' ../modules: `init` must install it
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "main.tf").write_text('resource "terraform_data" "x" {}\n')
    return tmp_path


def _vars(workdir: Path, size: int) -> Path:
    path = workdir / "chiml.auto.tfvars.json"
    path.write_text(json.dumps({"size": size}))
    return path


def test_init_apply_output_destroy(workdir: Path) -> None:
    tf = Terraform(workdir)
    assert tf.version().startswith("1.")
    tf.init()
    messages: list[str] = []
    result = tf.apply(_vars(workdir, 2), progress=messages.append)
    assert result.summary == "Apply complete! Resources: 3 added, 0 changed, 0 destroyed."
    assert result.outputs == {"nodes": ["node-0", "node-1"]}
    assert any("Creation complete" in m for m in messages)
    assert tf.output() == {"nodes": ["node-0", "node-1"]}
    assert tf.has_resources()
    result = tf.destroy(_vars(workdir, 2), refresh=False)
    assert result.summary == "Destroy complete! Resources: 3 destroyed."
    assert not tf.has_resources()


def test_errors_become_one_line_with_terraforms_reason(workdir: Path) -> None:
    tf = Terraform(workdir)
    tf.init()
    with pytest.raises(ChimlError, match="apply failed: Invalid value for variable: size must be between 0 and 4"):
        tf.apply(_vars(workdir, 9))
    assert not tf.has_resources()


def test_apply_before_init_fails_cleanly(workdir: Path) -> None:
    with pytest.raises(ChimlError, match="terraform apply failed: Module not installed"):
        Terraform(workdir).apply(_vars(workdir, 1))


def test_flag_errors_are_reported_without_ansi_noise(workdir: Path) -> None:
    tf = Terraform(workdir)
    result = tf._run(["destroy", "-force"])
    assert result.returncode == 1
    assert result.errors == ["Error: Failed to parse command-line flags flag provided but not defined: -force"]


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotSupportedError, match="cannot run terraform"):
        Terraform(tmp_path, binary=str(tmp_path / "no-terraform")).version()
