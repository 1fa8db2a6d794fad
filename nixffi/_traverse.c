/* The traversal's hot path in C: what nix-eval-jobs-like walkers ask of every attribute,
 * answered in one call instead of ~10 calls from Python. Compiled into nixffi._nixlib
 * (see _build.py); uses only the public Nix C API. Single-threaded, like all of nixffi. */

enum { EVIX_ERROR = -1, EVIX_SKIP = 0, EVIX_DERIVATION = 1, EVIX_TRAVERSE = 2, EVIX_ATTRS = 3, EVIX_FUNCTION = 4 };

static void evix_json_string(evix_buf * b, const char * s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    evix_buf_append(b, "\"", 1);
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
        evix_buf_append(b, s + start, i - start);
        start = i + 1;
        switch (ch) {
        case '"': evix_buf_append(b, "\\\"", 2); break;
        case '\\': evix_buf_append(b, "\\\\", 2); break;
        case '\n': evix_buf_append(b, "\\n", 2); break;
        case '\t': evix_buf_append(b, "\\t", 2); break;
        case '\r': evix_buf_append(b, "\\r", 2); break;
        case '\b': evix_buf_append(b, "\\b", 2); break;
        case '\f': evix_buf_append(b, "\\f", 2); break;
        default: {
            char esc[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            evix_buf_append(b, esc, 6);
        }
        }
    }
    evix_buf_append(b, s + start, n - start);
    evix_buf_append(b, "\"", 1);
}

static evix_buf evix_scratch;
static nix_c_context * evix_release_ctx;

/* Releases a value with a context of its own, so the caller's context keeps its error. */
static void evix_release(nix_value * v) {
    if (!evix_release_ctx) evix_release_ctx = nix_c_context_create();
    nix_value_decref(evix_release_ctx, v);
}

/* The attribute `name` of `v` as a string into evix_scratch; 1 found, 0 absent or not a string, -1 error. */
static int evix_string_attr(nix_c_context * c, EvalState * st, const nix_value * v, const char * name) {
    if (!nix_has_attr_byname(c, v, st, name)) return nix_err_code(c) == NIX_OK ? 0 : -1;
    nix_value * a = nix_get_attr_byname(c, v, st, name);
    if (!a) return -1;
    int found = 0;
    if (nix_get_type(c, a) == NIX_TYPE_STRING) {
        evix_scratch.len = 0;
        found = nix_get_string(c, a, evix_buf_set, &evix_scratch) == NIX_OK ? 1 : -1;
    }
    evix_release(a);
    return found;
}

/* What the traversal does with `v`: skip it, report a derivation, traverse an attribute
 * set, leave an attribute set alone, or auto-call it (a function, or a set with `__functor`:
 * what Nix's autoCallFunction calls, checked first as Nix does). Forces `v`. */
static int evix_classify(nix_c_context * c, EvalState * st, nix_value * v, int force_recurse) {
    if (nix_value_force(c, st, v) != NIX_OK) return EVIX_ERROR;
    ValueType type = nix_get_type(c, v);
    if (type == NIX_TYPE_FUNCTION) return EVIX_FUNCTION;
    if (type != NIX_TYPE_ATTRS) return EVIX_SKIP;
    if (nix_has_attr_byname(c, v, st, "__functor")) return EVIX_FUNCTION;
    int t = evix_string_attr(c, st, v, "type");
    if (t < 0) return EVIX_ERROR;
    if (t == 1 && evix_scratch.len == 10 && memcmp(evix_scratch.data, "derivation", 10) == 0)
        return EVIX_DERIVATION;
    if (force_recurse) return EVIX_TRAVERSE;
    if (!nix_has_attr_byname(c, v, st, "recurseForDerivations")) return EVIX_ATTRS;
    nix_value * r = nix_get_attr_byname(c, v, st, "recurseForDerivations");
    if (!r) return EVIX_ERROR;
    int yes = nix_get_type(c, r) == NIX_TYPE_BOOL && nix_get_bool(c, r);
    evix_release(r);
    return yes ? EVIX_TRAVERSE : EVIX_ATTRS;
}

/* The child `name` of the attribute set `parent`, classified. On DERIVATION, TRAVERSE or
 * FUNCTION the child is returned in *out (one reference, for the caller to release). */
static int evix_classify_child(nix_c_context * c, EvalState * st, const nix_value * parent, const char * name,
                               int force_recurse, nix_value ** out) {
    *out = NULL;
    nix_value * v = nix_get_attr_byname(c, parent, st, name);
    if (!v) return EVIX_ERROR;
    int kind = evix_classify(c, st, v, force_recurse);
    if (kind == EVIX_DERIVATION || kind == EVIX_TRAVERSE || kind == EVIX_FUNCTION)
        *out = v;
    else
        evix_release(v);
    return kind;
}

static int evix_append_string_field(nix_c_context * c, EvalState * st, const nix_value * v, evix_buf * b,
                                    const char * key, const char * name, const char * fallback) {
    int found = evix_string_attr(c, st, v, name);
    if (found < 0) return -1;
    evix_buf_append(b, key, strlen(key));
    if (found)
        evix_json_string(b, evix_scratch.data, evix_scratch.len);
    else
        evix_json_string(b, fallback, strlen(fallback));
    return 0;
}

enum { EVIX_HAS_META = 1, EVIX_HAS_AGGREGATE = 2, EVIX_HAS_FEATURES = 4 };

/* Writes `"name":…,"system":…,"drvPath":…,"outputs":{…}` of the derivation `v` into `b`.
 * drvPath is forced first, so an evaluation error of the derivation surfaces here.
 * Returns -1 on error, else flags saying whether `meta` and `_hydraAggregate` exist, and
 * whether the .drv may require system features (`requiredSystemFeatures`, or outputs not
 * known statically: `__contentAddressed`, `__impure`). */
static int evix_derivation_json(nix_c_context * c, EvalState * st, const nix_value * v, evix_buf * b) {
    b->len = 0;
    evix_buf drv = {0};
    int found = evix_string_attr(c, st, v, "drvPath");
    if (found <= 0) {
        if (found == 0) nix_set_err_msg(c, NIX_ERR_UNKNOWN, "derivation has no string attribute 'drvPath'");
        return -1;
    }
    evix_buf_append(&drv, evix_scratch.data, evix_scratch.len);
    if (evix_append_string_field(c, st, v, b, "\"name\":", "name", "") < 0 ||
        evix_append_string_field(c, st, v, b, ",\"system\":", "system", "unknown") < 0) {
        evix_buf_release(&drv);
        return -1;
    }
    evix_buf_append(b, ",\"drvPath\":", 11);
    evix_json_string(b, drv.data, drv.len);
    evix_buf_release(&drv);
    evix_buf_append(b, ",\"outputs\":{", 12);
    nix_value * outputs = NULL;
    if (nix_has_attr_byname(c, v, st, "outputs")) {
        outputs = nix_get_attr_byname(c, v, st, "outputs");
        if (!outputs) return -1;
        if (nix_get_type(c, outputs) != NIX_TYPE_LIST) {
            evix_release(outputs);
            outputs = NULL;
        }
    }
    unsigned int n = outputs ? nix_get_list_size(c, outputs) : 1;
    evix_buf name = {0};
    int rc = 0;
    for (unsigned int i = 0; i < n && rc == 0; i++) {
        name.len = 0;
        if (outputs) {
            nix_value * o = nix_get_list_byidx(c, outputs, st, i);
            if (!o || nix_value_force(c, st, o) != NIX_OK) { if (o) evix_release(o); rc = -1; break; }
            if (nix_get_type(c, o) != NIX_TYPE_STRING || nix_get_string(c, o, evix_buf_set, &name) != NIX_OK) {
                evix_release(o);
                continue;
            }
            evix_release(o);
        } else {
            evix_buf_set("out", 3, &name);
        }
        if (i > 0 && b->data[b->len - 1] != '{') evix_buf_append(b, ",", 1);
        evix_json_string(b, name.data, name.len);
        evix_buf_append(b, ":", 1);
        int path_found = 0;
        if (nix_has_attr_byname(c, v, st, name.data)) {
            nix_value * out = nix_get_attr_byname(c, v, st, name.data);
            if (!out) { rc = -1; break; }
            if (nix_get_type(c, out) == NIX_TYPE_ATTRS) {
                int f = evix_string_attr(c, st, out, "outPath");
                if (f < 0) rc = -1;
                else if (f == 1 && evix_scratch.len > 0 && evix_scratch.data[0] == '/') {
                    evix_json_string(b, evix_scratch.data, evix_scratch.len);
                    path_found = 1;
                }
            }
            evix_release(out);
        }
        if (!path_found && rc == 0) evix_buf_append(b, "null", 4);
    }
    evix_buf_release(&name);
    if (outputs) evix_release(outputs);
    if (rc != 0) return rc;
    evix_buf_append(b, "}", 1);
    return (nix_has_attr_byname(c, v, st, "meta") ? EVIX_HAS_META : 0)
         | (nix_has_attr_byname(c, v, st, "_hydraAggregate") ? EVIX_HAS_AGGREGATE : 0)
         | (nix_has_attr_byname(c, v, st, "requiredSystemFeatures") || nix_has_attr_byname(c, v, st, "__contentAddressed")
            || nix_has_attr_byname(c, v, st, "__impure") ? EVIX_HAS_FEATURES : 0);
}

static int evix_strcmp(const void * a, const void * b) {
    return strcmp(*(const char * const *) a, *(const char * const *) b);
}

/* The attribute names of the set `v` as a JSON array, sorted bytewise, into `b`. */
static int evix_attr_names_json(nix_c_context * c, EvalState * st, const nix_value * v, evix_buf * b) {
    b->len = 0;
    unsigned int n = nix_get_attrs_size(c, v);
    if (nix_err_code(c) != NIX_OK) return -1;
    const char ** names = malloc((n ? n : 1) * sizeof * names);
    if (!names) { nix_set_err_msg(c, NIX_ERR_UNKNOWN, "out of memory"); return -1; }
    for (unsigned int i = 0; i < n; i++) {
        names[i] = nix_get_attr_name_byidx(c, v, st, i);
        if (!names[i]) { free(names); return -1; }
    }
    qsort(names, n, sizeof * names, evix_strcmp);
    evix_buf_append(b, "[", 1);
    for (unsigned int i = 0; i < n; i++) {
        if (i) evix_buf_append(b, ",", 1);
        evix_json_string(b, names[i], strlen(names[i]));
    }
    evix_buf_append(b, "]", 1);
    free(names);
    return 0;
}
