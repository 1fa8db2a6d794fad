"""nixffi: the Nix C API for Python; the only package of evix that touches cffi.

Use from one thread per process: Nix's garbage collector aborts on collections that see
an unregistered thread.

    store = nixffi.Store()
    state = nixffi.EvalState(store, lookup_path=["nixpkgs=/src/nixpkgs"])
    drv = state.eval_string('derivation { name = "x"; system = "x86_64-linux"; builder = "/bin/sh"; }')
    drv.get("drvPath").as_str()
"""

from ._native import has_function as has_function
from ._native import init as init
from .errors import NixError as NixError
from .errors import NixUnavailableError as NixUnavailableError
from .flake import load_flake as load_flake
from .in_flight import InFlightMarker as InFlightMarker
from .flake import locked_flake_ref as locked_flake_ref
from .flake import resolve_indirect as resolve_indirect
from .flake import unmatched_inputs as unmatched_inputs
from .settings import apply_setting as apply_setting
from .settings import enable_experimental_features as enable_experimental_features
from .settings import enable_flakes as enable_flakes
from .settings import gc_heap_size as gc_heap_size
from .settings import get_setting as get_setting
from .settings import limit_gc_heap as limit_gc_heap
from .settings import nix_version as nix_version
from .settings import set_read_only_mode as set_read_only_mode
from .settings import set_setting as set_setting
from .state import AutoArg as AutoArg
from .state import EvalState as EvalState
from .store import Store as Store
from .value import Value as Value
from .value import ValueType as ValueType
