"""Builds `nixffi._nixlib`, the cffi extension over the Nix C API (API mode: compiled, not dlopen).

API mode because a call costs ~90 ns instead of ~140 ns and the import is faster (measured,
see shared notes). The declarations below are the 2.26 prototypes; each one is kept only if
the installed headers declare that function, so the same build works against Nix 2.28-2.34
and the Python side asks `nixffi.has_function(name)` instead of assuming a version.

Run directly (`python nixffi/_build.py`) to build in place, or through setuptools'
`cffi_modules`. Headers and libraries come from pkg-config (`nix-expr-c`, ...).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from cffi import FFI

PKG_CONFIG_MODULES = ["nix-util-c", "nix-store-c", "nix-expr-c", "nix-flake-c"]
HEADERS = ["nix_api_util.h", "nix_api_store.h", "nix_api_expr.h", "nix_api_value.h", "nix_api_flake.h"]

TYPES = """
typedef enum { NIX_OK = 0, NIX_ERR_UNKNOWN = -1, NIX_ERR_OVERFLOW = -2, NIX_ERR_KEY = -3,
               NIX_ERR_NIX_ERROR = -4 } nix_err;
typedef struct nix_c_context nix_c_context;
typedef void (*nix_get_string_callback)(const char * start, unsigned int n, void * user_data);
typedef struct Store Store;
typedef struct StorePath StorePath;
typedef struct EvalState EvalState;
typedef struct nix_eval_state_builder nix_eval_state_builder;
typedef struct nix_value nix_value;
typedef struct BindingsBuilder BindingsBuilder;
typedef struct ListBuilder ListBuilder;
typedef struct nix_flake_settings nix_flake_settings;
typedef enum { NIX_TYPE_THUNK, NIX_TYPE_INT, NIX_TYPE_FLOAT, NIX_TYPE_BOOL, NIX_TYPE_STRING,
               NIX_TYPE_PATH, NIX_TYPE_NULL, NIX_TYPE_ATTRS, NIX_TYPE_LIST, NIX_TYPE_FUNCTION,
               NIX_TYPE_EXTERNAL } ValueType;
"""

# One prototype per line, as in the 2.26 headers.
FUNCTIONS = """
nix_c_context * nix_c_context_create();
void nix_c_context_free(nix_c_context * context);
nix_err nix_err_code(const nix_c_context * read_context);
const char * nix_err_msg(nix_c_context * context, const nix_c_context * ctx, unsigned int * n);
nix_err nix_err_info_msg(nix_c_context * context, const nix_c_context * read_context, nix_get_string_callback callback, void * user_data);
nix_err nix_err_name(nix_c_context * context, const nix_c_context * read_context, nix_get_string_callback callback, void * user_data);
void nix_clear_err(nix_c_context * context);
nix_err nix_libutil_init(nix_c_context * context);
const char * nix_version_get();
nix_err nix_setting_get(nix_c_context * context, const char * key, nix_get_string_callback callback, void * user_data);
nix_err nix_setting_set(nix_c_context * context, const char * key, const char * value);
nix_err nix_libstore_init(nix_c_context * context);
Store * nix_store_open(nix_c_context * context, const char * uri, const char *** params);
void nix_store_free(Store * store);
nix_err nix_store_get_uri(nix_c_context * context, Store * store, nix_get_string_callback callback, void * user_data);
nix_err nix_store_get_storedir(nix_c_context * context, Store * store, nix_get_string_callback callback, void * user_data);
nix_err nix_store_get_version(nix_c_context * context, Store * store, nix_get_string_callback callback, void * user_data);
StorePath * nix_store_parse_path(nix_c_context * context, Store * store, const char * path);
void nix_store_path_free(StorePath * p);
bool nix_store_is_valid_path(nix_c_context * context, Store * store, StorePath * path);
nix_err nix_libexpr_init(nix_c_context * context);
EvalState * nix_state_create(nix_c_context * context, const char ** lookupPath, Store * store);
void nix_state_free(EvalState * state);
nix_eval_state_builder * nix_eval_state_builder_new(nix_c_context * context, Store * store);
nix_err nix_eval_state_builder_load(nix_c_context * context, nix_eval_state_builder * builder);
nix_err nix_eval_state_builder_set_lookup_path(nix_c_context * context, nix_eval_state_builder * builder, const char ** lookupPath);
EvalState * nix_eval_state_build(nix_c_context * context, nix_eval_state_builder * builder);
void nix_eval_state_builder_free(nix_eval_state_builder * builder);
nix_err nix_expr_eval_from_string(nix_c_context * context, EvalState * state, const char * expr, const char * path, nix_value * value);
nix_err nix_value_call(nix_c_context * context, EvalState * state, nix_value * fn, nix_value * arg, nix_value * value);
nix_err nix_value_call_multi(nix_c_context * context, EvalState * state, nix_value * fn, size_t nargs, nix_value ** args, nix_value * value);
nix_err nix_value_force(nix_c_context * context, EvalState * state, nix_value * value);
nix_err nix_value_force_deep(nix_c_context * context, EvalState * state, nix_value * value);
void nix_gc_now();
nix_value * nix_alloc_value(nix_c_context * context, EvalState * state);
nix_err nix_value_incref(nix_c_context * context, nix_value * value);
nix_err nix_value_decref(nix_c_context * context, nix_value * value);
ValueType nix_get_type(nix_c_context * context, const nix_value * value);
bool nix_get_bool(nix_c_context * context, const nix_value * value);
int64_t nix_get_int(nix_c_context * context, const nix_value * value);
double nix_get_float(nix_c_context * context, const nix_value * value);
nix_err nix_get_string(nix_c_context * context, const nix_value * value, nix_get_string_callback callback, void * user_data);
const char * nix_get_path_string(nix_c_context * context, const nix_value * value);
unsigned int nix_get_list_size(nix_c_context * context, const nix_value * value);
unsigned int nix_get_attrs_size(nix_c_context * context, const nix_value * value);
nix_value * nix_get_list_byidx(nix_c_context * context, const nix_value * value, EvalState * state, unsigned int ix);
nix_value * nix_get_attr_byname(nix_c_context * context, const nix_value * value, EvalState * state, const char * name);
bool nix_has_attr_byname(nix_c_context * context, const nix_value * value, EvalState * state, const char * name);
const char * nix_get_attr_name_byidx(nix_c_context * context, const nix_value * value, EvalState * state, unsigned int i);
nix_value * nix_get_attr_byidx(nix_c_context * context, const nix_value * value, EvalState * state, unsigned int i, const char ** name);
nix_err nix_init_bool(nix_c_context * context, nix_value * value, bool b);
nix_err nix_init_string(nix_c_context * context, nix_value * value, const char * str);
nix_err nix_init_int(nix_c_context * context, nix_value * value, int64_t i);
nix_err nix_init_null(nix_c_context * context, nix_value * value);
nix_err nix_init_path_string(nix_c_context * context, EvalState * s, nix_value * value, const char * str);
nix_err nix_copy_value(nix_c_context * context, nix_value * value, const nix_value * source);
BindingsBuilder * nix_make_bindings_builder(nix_c_context * context, EvalState * state, size_t capacity);
nix_err nix_bindings_builder_insert(nix_c_context * context, BindingsBuilder * builder, const char * name, nix_value * value);
nix_err nix_make_attrs(nix_c_context * context, nix_value * value, BindingsBuilder * b);
void nix_bindings_builder_free(BindingsBuilder * builder);
nix_flake_settings * nix_flake_settings_new(nix_c_context * context);
void nix_flake_settings_free(nix_flake_settings * settings);
nix_err nix_flake_init_global(nix_c_context * context, nix_flake_settings * settings);
"""

# Our own C: a growable buffer that Nix's string callbacks write into, so reading a string
# never calls back into Python.
HELPERS_CDEF = """
typedef struct { char * data; size_t len; size_t cap; } evix_buf;
void evix_buf_set(const char * start, unsigned int n, void * user_data);
void evix_buf_release(evix_buf * buf);
void evix_gc_set_max_heap_size(size_t bytes);
size_t evix_gc_heap_size(void);
int evix_classify(nix_c_context * c, EvalState * st, nix_value * v, int force_recurse);
int evix_classify_child(nix_c_context * c, EvalState * st, const nix_value * parent, const char * name,
                        int force_recurse, nix_value ** out);
int evix_derivation_json(nix_c_context * c, EvalState * st, const nix_value * v, evix_buf * b);
int evix_attr_names_json(nix_c_context * c, EvalState * st, const nix_value * v, evix_buf * b);
#define EVIX_IN_FLIGHT_SIZE ...
void evix_mark_in_flight(char * word, uint64_t batch, uint64_t item);
"""
HELPERS_SOURCE = r"""
#include <stdlib.h>
#include <string.h>
typedef struct { char * data; size_t len; size_t cap; } evix_buf;
static int evix_buf_append(evix_buf * b, const char * s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char * p = realloc(b->data, cap);
        if (!p) return -1;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}
static void evix_buf_set(const char * start, unsigned int n, void * user_data) {
    evix_buf * b = (evix_buf *) user_data;
    b->len = 0;
    if (evix_buf_append(b, start, n) != 0) b->len = 0;
}
static void evix_buf_release(evix_buf * buf) { free(buf->data); buf->data = NULL; buf->cap = buf->len = 0; }
/* Boehm GC, which libnixexpr links: a heap cap makes an over-large allocation fail (Nix
   throws std::bad_alloc) instead of growing until the kernel kills the process. */
extern void GC_set_max_heap_size(size_t n);
extern size_t GC_get_heap_size(void);
static void evix_gc_set_max_heap_size(size_t bytes) { GC_set_max_heap_size(bytes); }
static size_t evix_gc_heap_size(void) { return GC_get_heap_size(); }
/* The in-flight word (protocol/in_flight.py, whose constants are defined above it): marks
   item `item` of batch `batch` as started. Byte by byte, so little-endian on any host. */
static void evix_put_le64(unsigned char * p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char) (v >> (8 * i));
}
static void evix_mark_in_flight(char * word, uint64_t batch, uint64_t item) {
    evix_put_le64((unsigned char *) word + EVIX_IN_FLIGHT_BATCH_OFFSET, batch);
    evix_put_le64((unsigned char *) word + EVIX_IN_FLIGHT_ITEM_OFFSET, item + EVIX_IN_FLIGHT_ITEM_BIAS);
}
"""


def in_flight_defines() -> str:
    """The in-flight word's layout as #defines, from its one definition in protocol/in_flight.py
    (loaded by path: it is standard library only, and the build runs without the repo on sys.path)."""
    path = Path(__file__).resolve().parent.parent / "protocol" / "in_flight.py"
    spec = importlib.util.spec_from_file_location("_evix_in_flight_layout", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return "".join(f"#define {name} {value}\n" for name, value in module.c_defines().items())


HOW_TO_GET_NIX = """\
To get it: install Nix >= 2.26 with its C API and put its lib/pkgconfig on PKG_CONFIG_PATH
(on Nix: `nix develop` in evix's source, or evix's flake package). On Debian 12, run
scripts/bootstrap-nix from evix's source (it builds Nix 2.26.3 into ~/.cache/evix), then:
  PKG_CONFIG_PATH=~/.cache/evix/nix-2.26.3/lib/pkgconfig pip install .
(in a clone of evix, `scripts/dev setup` does all of this)."""


def cannot_build(why: str, detail: str = "", how: str = HOW_TO_GET_NIX) -> None:
    """Stops the build with what is missing and how to get it, instead of a tool's raw error."""
    said = f"\n  ({detail.strip().splitlines()[0]})" if detail.strip() else ""
    sys.exit(f"nixffi: cannot build evix's Nix bindings: {why}{said}\n{how}")


def _pkg_config(*args: str) -> list[str]:
    try:
        out = subprocess.run(["pkg-config", *args, *PKG_CONFIG_MODULES], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        cannot_build("pkg-config is not installed", how="Install it (Debian: apt-get install pkgconf).\n" + HOW_TO_GET_NIX)
    except subprocess.CalledProcessError as e:
        cannot_build("pkg-config finds no Nix C API (nix-expr-c >= 2.26)", f"pkg-config: {e.stderr}")
    return shlex.split(out.stdout)


def check_toolchain() -> None:
    """A C compiler, the Python headers and Nix >= 2.26: each missing one named, with its package."""
    if subprocess.run(["pkg-config", "--atleast-version=2.26", "nix-expr-c"], capture_output=True).returncode != 0:
        found = subprocess.run(["pkg-config", "--modversion", "nix-expr-c"], capture_output=True, text=True)
        cannot_build(f"the Nix C API found is {found.stdout.strip() or 'unknown'}, older than 2.26")
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")[0]
    if shutil.which(compiler) is None:
        cannot_build(f"no C compiler ({compiler})", how="Install one (Debian: apt-get install build-essential).")
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        cannot_build(f"the Python {version} headers are missing (no {include}/Python.h)",
                     how=f"Install them (Debian: apt-get install python3-dev, or python{version}-dev).")


def _header_text(include_dirs: list[str]) -> str:
    text = []
    for header in HEADERS:
        for d in include_dirs:
            path = Path(d) / header
            if path.exists():
                text.append(path.read_text())
                break
        else:
            cannot_build(f"the Nix C API header {header} is not in {include_dirs}")
    return "\n".join(text)


def declared_functions(header_text: str) -> str:
    """The subset of FUNCTIONS that the installed headers declare."""
    kept = []
    for line in FUNCTIONS.strip().splitlines():
        name = re.search(r"(\w+)\s*\(", line).group(1)
        if re.search(rf"\b{name}\s*\(", header_text):
            kept.append(line)
    return "\n".join(kept)


def _read_only_shim(build_dir: Path) -> list[str]:
    """The object file of _readonly.cc (Nix's read-only mode), or [] when Nix's C++ headers
    (pkg-config nix-store) are missing or do not compile it: then nixffi goes without it."""
    try:
        flags = subprocess.run(["pkg-config", "--cflags", "nix-store"], check=True, capture_output=True,
                               text=True).stdout
    except (FileNotFoundError, subprocess.CalledProcessError):
        return []
    obj = build_dir / "_readonly.o"
    build_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["c++", "-c", "-fPIC", "-O2", *shlex.split(flags), str(Path(__file__).with_name("_readonly.cc")), "-o", str(obj)]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        print("nixffi: Nix's C++ headers do not compile _readonly.cc: building without read-only mode", file=sys.stderr)
        return []
    return [str(obj)]


def make_ffibuilder() -> FFI:
    cflags_all = _pkg_config("--cflags")  # first: the clearest message when Nix is missing
    check_toolchain()
    cflags = [f for f in cflags_all if not f.startswith("-std=")]  # .pc has -std=c++2a
    include_dirs = [f[2:] for f in cflags if f.startswith("-I")]
    libs = _pkg_config("--libs")
    lib_dirs = [f[2:] for f in libs if f.startswith("-L")]
    shim = _read_only_shim(Path(__file__).resolve().parent.parent / "build" / "nixffi")
    builder = FFI()
    builder.cdef(TYPES + declared_functions(_header_text(include_dirs)) + HELPERS_CDEF
                 + ("void evix_set_read_only_mode(int on);\n" if shim else ""))
    builder.set_source(
        "nixffi._nixlib",
        "#include <stdbool.h>\n#include <stdint.h>\n"
        + "".join(f"#include <{h}>\n" for h in HEADERS)
        + in_flight_defines()
        + ("extern void evix_set_read_only_mode(int on);\n" if shim else "")
        + HELPERS_SOURCE
        + Path(__file__).with_name("_traverse.c").read_text(),
        extra_objects=shim,
        extra_compile_args=[f for f in cflags if not f.startswith("-I")] + ["-O2", "-Wno-deprecated-declarations"],
        include_dirs=include_dirs,
        libraries=[f[2:] for f in libs if f.startswith("-l")] + ["gc"],
        library_dirs=lib_dirs,
        runtime_library_dirs=lib_dirs,
    )
    return builder


ffibuilder = make_ffibuilder()  # the name setuptools' `cffi_modules` looks for

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(Path(__file__).resolve().parent.parent), verbose=False)
