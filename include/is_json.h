/* A strict, allocation-light JSON reader for the few fields the host itself
 * must see (watch event type, object metadata, Status fields). Objects are
 * kept as raw bytes everywhere else: Lua decodes them with lua-cjson.
 *
 * The parser validates the whole text (RFC 8259) and produces a flat token
 * array in document order, jsmn style, without copying the input. The caller
 * owns the is_json_t and the input text, which must outlive the tokens. */
#ifndef IS_JSON_H
#define IS_JSON_H

#include <stddef.h>

typedef enum {
    IS_JSON_OBJECT = 1,
    IS_JSON_ARRAY,
    IS_JSON_STRING, /* start/end exclude the quotes; escapes not decoded */
    IS_JSON_NUMBER,
    IS_JSON_TRUE,
    IS_JSON_FALSE,
    IS_JSON_NULL
} is_json_type_t;

typedef struct is_json_tok_s {
    is_json_type_t type;
    size_t start;  /* byte offset of the value (inside the quotes for strings) */
    size_t end;    /* one past the last byte */
    int size;      /* objects: number of keys; arrays: number of elements */
    int next;      /* index of the token after this value and all its children */
} is_json_tok_t;

typedef struct is_json_s {
    const char *text;
    size_t len;
    is_json_tok_t *toks;  /* owned; toks[0] is the root value */
    int ntoks;
    int cap;
} is_json_t;

/* Parses text[0..len). On IS_EPARSE, *err_off (if not NULL) is the offset of
 * the first bad byte. is_json_free must be called in every case. */
int is_json_parse(is_json_t *doc, const char *text, size_t len, size_t *err_off);
void is_json_free(is_json_t *doc);

/* Index of the value for key in the object at token obj, or -1. Keys are
 * compared after escape decoding. */
int is_json_get(const is_json_t *doc, int obj, const char *key);
/* Follows a dotted path of object keys from obj ("metadata.name"), or -1. */
int is_json_path(const is_json_t *doc, int obj, const char *path);
/* Decodes the string token tok (escapes, \uXXXX with surrogate pairs to
 * UTF-8) into a new NUL-terminated string the caller frees with is_free.
 * Returns IS_EINVAL if tok is not a string. */
int is_json_strdup(const is_json_t *doc, int tok, char **out);
/* Integer value of a number token. IS_EINVAL if not an integer number. */
int is_json_int(const is_json_t *doc, int tok, long long *out);
/* Raw bytes of any value, strings including their quotes. */
const char *is_json_raw(const is_json_t *doc, int tok, size_t *len);

/* The bytes [*start, *end) of doc->text to cut to drop the member at the
 * dotted path from obj ("metadata.managedFields"), key and separating comma
 * included, so that the rest is still valid JSON. IS_ENOTFOUND when there
 * is no such member. */
int is_json_member_span(const is_json_t *doc, int obj, const char *path, size_t *start, size_t *end);

#endif
