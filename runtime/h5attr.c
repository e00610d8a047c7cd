// h5attr.c — HDF5 attributes: scalar writes and the checked, table-driven reader (see h5attr.h).
#include "runtime/h5attr.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

void h5attr_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

int h5attr_write(hid_t loc, const char *name, hid_t type, const void *value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int ok = attr >= 0 && H5Awrite(attr, type, value) >= 0;
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    return ok;
}

int h5attr_write_str(hid_t loc, const char *name, const char *value) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, strlen(value) + 1);
    int ok = h5attr_write(loc, name, type, value);
    H5Tclose(type);
    return ok;
}

// ---------------------------------------------------------------------------------------------
// reading

// what the spec accepts, for messages: "one integer in [1, 4096]", "the string \"x\""
static void describe_expected(const h5attr_spec *s, char *buf, size_t n) {
    switch (s->kind) {
    case H5ATTR_HASH: snprintf(buf, n, "one unsigned 64-bit integer"); break;
    case H5ATTR_STRING:
        if (s->value)
            snprintf(buf, n, "the string \"%s\"", s->value);
        else
            snprintf(buf, n, "a fixed-length string of at most %lld bytes", (long long)s->max);
        break;
    default:
        if (s->min == s->max)
            snprintf(buf, n, "the integer %lld", (long long)s->min);
        else
            snprintf(buf, n, "one integer in [%lld, %lld]", (long long)s->min, (long long)s->max);
    }
}

// what the file holds instead, for messages: "a 4-byte float", "a variable-length string"
static void describe_type(hid_t type, char *buf, size_t n) {
    size_t size = H5Tget_size(type);
    switch (H5Tget_class(type)) {
    case H5T_INTEGER: snprintf(buf, n, "an integer of %zu bytes", size); break;
    case H5T_FLOAT: snprintf(buf, n, "a float of %zu bytes", size); break;
    case H5T_STRING:
        snprintf(buf, n, H5Tis_variable_str(type) > 0 ? "a variable-length string" : "a string");
        break;
    case H5T_ARRAY: snprintf(buf, n, "an array type"); break;
    case H5T_COMPOUND: snprintf(buf, n, "a compound type"); break;
    case H5T_ENUM: snprintf(buf, n, "an enumeration"); break;
    case H5T_VLEN: snprintf(buf, n, "a variable-length sequence"); break;
    case H5T_REFERENCE: snprintf(buf, n, "a reference"); break;
    default: snprintf(buf, n, "a value of another type (class %d)", (int)H5Tget_class(type));
    }
}

// a string from the file, fit for one log line: at most 40 bytes, non-printing bytes as '?'
static void printable(const char *s, char *buf, size_t n) {
    size_t i = 0;
    for (; s[i] && i < 40 && i + 4 < n; i++)
        buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    if (s[i] && i + 4 < n) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
}

static int int_in_range(int is_signed, int64_t s, uint64_t u, int64_t min, int64_t max) {
    if (is_signed) return s >= min && s <= max;
    return max >= 0 && u <= (uint64_t)max && (min <= 0 || u >= (uint64_t)min);
}

// read one attribute as spec says into dst (the field); TS_ERR_INPUT with one line logged
static ts_status read_one(hid_t loc, const char *path, const char *obj, const h5attr_spec *s,
                          char *dst) {
    char where[320], expected[128], found[128];
    snprintf(where, sizeof where, "attribute '%s'%s%s%s", s->name, obj ? " of dataset '/" : "",
             obj ? obj : "", obj ? "'" : "");
    describe_expected(s, expected, sizeof expected);
    htri_t exists = H5Aexists(loc, s->name);
    if (exists == 0 && s->optional) {
        if (s->kind == H5ATTR_STRING && !s->value) {
            char *none = NULL;
            memcpy(dst, &none, sizeof none);
        }
        return TS_OK;
    }
    if (exists <= 0) {
        log_error("%s: %s is missing; expected %s", path, where, expected);
        return TS_ERR_INPUT;
    }
    ts_status st = TS_ERR_INPUT;
    char *text = NULL;
    hid_t attr = H5Aopen(loc, s->name, H5P_DEFAULT);
    hid_t space = attr >= 0 ? H5Aget_space(attr) : -1;
    hid_t type = attr >= 0 ? H5Aget_type(attr) : -1;
    if (space < 0 || type < 0) {
        log_error("%s: %s cannot be read (damaged file?); expected %s", path, where, expected);
        goto done;
    }
    // the dataspace first: whatever the type, more than one value would overrun dst
    H5S_class_t sclass = H5Sget_simple_extent_type(space);
    if (sclass != H5S_SCALAR) {
        hssize_t npoints = sclass == H5S_SIMPLE ? H5Sget_simple_extent_npoints(space) : 0;
        log_error("%s: %s holds %lld values (an array), expected %s", path, where,
                  (long long)npoints, expected);
        goto done;
    }
    H5T_class_t tclass = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    if (s->kind == H5ATTR_STRING) {
        if (tclass != H5T_STRING || H5Tis_variable_str(type) != 0 || size < 1 ||
            size > (size_t)s->max) {
            if (tclass == H5T_STRING && H5Tis_variable_str(type) == 0)
                snprintf(found, sizeof found, "a string of %zu bytes", size);
            else
                describe_type(type, found, sizeof found);
            log_error("%s: %s is %s, expected %s", path, where, found, expected);
            goto done;
        }
        text = calloc(size + 1, 1);
        if (!text) ts_fatal(TS_ERR_SYSTEM, "out of memory reading %s of %s", where, path);
        hid_t mem = H5Tcopy(H5T_C_S1);
        int ok = mem >= 0 && H5Tset_size(mem, size) >= 0 &&
                 H5Tset_strpad(mem, H5T_STR_NULLTERM) >= 0 && H5Aread(attr, mem, text) >= 0;
        if (mem >= 0) H5Tclose(mem);
        if (!ok) {
            log_error("%s: %s cannot be read (damaged file?); expected %s", path, where, expected);
            goto done;
        }
        if (s->value && strcmp(text, s->value) != 0) {
            printable(text, found, sizeof found);
            log_error("%s: %s is \"%s\", expected %s", path, where, found, expected);
            goto done;
        }
        if (!s->value) {
            memcpy(dst, &text, sizeof text);
            text = NULL; // the caller's now
        }
        st = TS_OK;
        goto done;
    }
    // integers: any integer type of up to 8 bytes, read in its own signedness so that no value
    // is clamped on the way (HDF5 saturates out-of-range conversions silently)
    int is_signed = H5Tget_sign(type) != H5T_SGN_NONE;
    if (tclass != H5T_INTEGER || size > 8 || (s->kind == H5ATTR_HASH && (is_signed || size != 8))) {
        describe_type(type, found, sizeof found);
        if (tclass == H5T_INTEGER && is_signed)
            snprintf(found, sizeof found, "a signed integer of %zu bytes", size);
        log_error("%s: %s is %s, expected %s", path, where, found, expected);
        goto done;
    }
    int64_t sv = 0;
    uint64_t uv = 0;
    if (H5Aread(attr, is_signed ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64,
                is_signed ? (void *)&sv : (void *)&uv) < 0) {
        log_error("%s: %s cannot be read (damaged file?); expected %s", path, where, expected);
        goto done;
    }
    if (s->kind != H5ATTR_HASH && !int_in_range(is_signed, sv, uv, s->min, s->max)) {
        if (is_signed)
            log_error("%s: %s is %lld, expected %s", path, where, (long long)sv, expected);
        else
            log_error("%s: %s is %llu, expected %s", path, where, (unsigned long long)uv, expected);
        goto done;
    }
    switch (s->kind) {
    case H5ATTR_INT: {
        int v = (int)(is_signed ? sv : (int64_t)uv); // in [min, max], within int
        memcpy(dst, &v, sizeof v);
        break;
    }
    case H5ATTR_INT64: {
        int64_t v = is_signed ? sv : (int64_t)uv;
        memcpy(dst, &v, sizeof v);
        break;
    }
    default: {
        uint64_t v = is_signed ? (uint64_t)sv : uv; // sv >= min >= 0 here
        memcpy(dst, &v, sizeof v);
    }
    }
    st = TS_OK;
done:
    free(text);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    if (attr >= 0) H5Aclose(attr);
    return st;
}

ts_status h5attr_read_table(hid_t loc, const char *path, const char *obj, const h5attr_spec *spec,
                            int n, void *out) {
    char *base = out;
    for (int i = 0; i < n; i++) {
        const h5attr_spec *s = &spec[i];
        TS_ASSERT(s->kind != H5ATTR_INT || (s->min >= INT_MIN && s->max <= INT_MAX));
        TS_ASSERT(s->kind != H5ATTR_UINT64 || s->min >= 0);
        if (read_one(loc, path, obj, s, base + s->offset) == TS_OK) continue;
        for (int j = 0; j < i; j++) { // free the strings stored so far
            if (spec[j].kind != H5ATTR_STRING || spec[j].value) continue;
            char *p;
            memcpy(&p, base + spec[j].offset, sizeof p);
            free(p);
            p = NULL;
            memcpy(base + spec[j].offset, &p, sizeof p);
        }
        return TS_ERR_INPUT;
    }
    return TS_OK;
}
