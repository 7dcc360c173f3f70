"""What chiml's two planes agree on (standard library only).

The control plane (``chiml``) and the data plane (``chiml_serving``, the serving runtimes) both
depend on this package and on nothing of each other: runtime names and their KServe wiring
(:mod:`chiml_contract.runtimes`), tensor specs (:class:`TensorSpec`), the V2 datatype table
(:mod:`chiml_contract.datatypes`), the MLflow-signature-to-V2 rules
(:mod:`chiml_contract.signature`) and the compiled-artifact layout (:mod:`chiml_contract.artifact`).
"""

from chiml_contract.artifact import SPEC_FILE, RuntimeSpec
from chiml_contract.signature import Interface, interface_from_signature
from chiml_contract.tensors import TensorSpec

__version__ = "0.1.0"
__all__ = ["SPEC_FILE", "Interface", "RuntimeSpec", "TensorSpec", "interface_from_signature"]
