/* Strict JSON (RFC 8259) tokenizer.
 *
 * One pass, no recursion: open containers live on a fixed-size stack, so a
 * hostile "[[[[..." cannot overflow the C stack; it hits JSON_MAX_DEPTH and
 * fails with IS_ELIMIT instead. Strings are validated for grammar only
 * (escapes, no raw control characters); their bytes are not checked to be
 * UTF-8, because the API server only ever sends valid UTF-8 and the raw
 * bytes are handed to lua-cjson, which does not check either. */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_json.h"

#define JSON_MAX_DEPTH 512

typedef enum {
    EXPECT_VALUE,          /* after ':' or ',' in an array, or at the start */
    EXPECT_VALUE_OR_CLOSE, /* right after '[' */
    EXPECT_KEY,            /* after ',' in an object */
    EXPECT_KEY_OR_CLOSE,   /* right after '{' */
    EXPECT_COLON,
    EXPECT_COMMA_OR_CLOSE,
    EXPECT_END             /* the root value is complete */
} json_state_t;

static int is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(char c) {
    return c >= '0' && c <= '9';
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Appends a token and returns its index, or a negative status. */
static int push_tok(is_json_t *doc, is_json_type_t type, size_t start, size_t end) {
    if (doc->ntoks == doc->cap) {
        if (doc->cap > INT_MAX / 2)
            return IS_ELIMIT;
        int cap = doc->cap ? doc->cap * 2 : 32;
        is_json_tok_t *toks = is_realloc(doc->toks, (size_t)cap * sizeof *toks);
        if (!toks)
            return IS_ENOMEM;
        doc->toks = toks;
        doc->cap = cap;
    }
    int i = doc->ntoks++;
    doc->toks[i] = (is_json_tok_t){ .type = type, .start = start, .end = end,
                                    .size = 0, .next = i + 1 };
    return i;
}

/* Scans a string body starting after its opening quote. Returns the offset
 * of the closing quote, or sets *bad to the first offending byte. */
static int scan_string(const char *s, size_t len, size_t pos, size_t *close, size_t *bad) {
    while (pos < len) {
        unsigned char c = (unsigned char)s[pos];
        if (c == '"') {
            *close = pos;
            return IS_OK;
        }
        if (c < 0x20) {
            *bad = pos;
            return IS_EPARSE;
        }
        if (c != '\\') {
            pos++;
            continue;
        }
        if (++pos >= len)
            break;
        switch (s[pos]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            pos++;
            break;
        case 'u':
            for (int k = 1; k <= 4; k++) {
                if (pos + k >= len)
                    goto truncated;
                if (hex_value(s[pos + k]) < 0) {
                    *bad = pos + k;
                    return IS_EPARSE;
                }
            }
            pos += 5;
            break;
        default:
            *bad = pos;
            return IS_EPARSE;
        }
    }
truncated:
    *bad = len;
    return IS_EPARSE;
}

/* number = [ "-" ] int [ frac ] [ exp ]. Returns the end offset, or sets
 * *bad. What follows the number is the state machine's business. */
static int scan_number(const char *s, size_t len, size_t pos, size_t *end, size_t *bad) {
    if (pos < len && s[pos] == '-')
        pos++;
    if (pos >= len || !is_digit(s[pos]))
        goto fail;
    if (s[pos] == '0') {
        pos++;  /* no leading zeros: "01" ends after the 0 and then fails */
    } else {
        while (pos < len && is_digit(s[pos]))
            pos++;
    }
    if (pos < len && s[pos] == '.') {
        pos++;
        if (pos >= len || !is_digit(s[pos]))
            goto fail;
        while (pos < len && is_digit(s[pos]))
            pos++;
    }
    if (pos < len && (s[pos] == 'e' || s[pos] == 'E')) {
        pos++;
        if (pos < len && (s[pos] == '+' || s[pos] == '-'))
            pos++;
        if (pos >= len || !is_digit(s[pos]))
            goto fail;
        while (pos < len && is_digit(s[pos]))
            pos++;
    }
    *end = pos;
    return IS_OK;
fail:
    *bad = pos;
    return IS_EPARSE;
}

int is_json_parse(is_json_t *doc, const char *text, size_t len, size_t *err_off) {
    doc->text = text;
    doc->len = len;
    doc->toks = NULL;
    doc->ntoks = 0;
    doc->cap = 0;

    int stack[JSON_MAX_DEPTH];  /* token index of each open container */
    int depth = 0;
    json_state_t state = EXPECT_VALUE;
    size_t pos = 0, bad = 0;
    int rc;

    for (;;) {
        while (pos < len && is_ws(text[pos]))
            pos++;
        if (pos >= len) {
            if (state == EXPECT_END)
                return IS_OK;
            bad = len;
            goto parse_error;
        }
        char c = text[pos];

        switch (state) {
        case EXPECT_END:
            bad = pos;  /* trailing garbage after the root value */
            goto parse_error;

        case EXPECT_COLON:
            if (c != ':') {
                bad = pos;
                goto parse_error;
            }
            pos++;
            state = EXPECT_VALUE;
            continue;

        case EXPECT_COMMA_OR_CLOSE: {
            is_json_type_t open = doc->toks[stack[depth - 1]].type;
            if (c == ',') {
                pos++;
                state = open == IS_JSON_OBJECT ? EXPECT_KEY : EXPECT_VALUE;
                continue;
            }
            if ((c == '}' && open == IS_JSON_OBJECT) || (c == ']' && open == IS_JSON_ARRAY))
                goto close_container;
            bad = pos;
            goto parse_error;
        }

        case EXPECT_KEY_OR_CLOSE:
            if (c == '}')
                goto close_container;
            /* fall through */
        case EXPECT_KEY: {
            if (c != '"') {
                bad = pos;
                goto parse_error;
            }
            size_t close;
            if (scan_string(text, len, pos + 1, &close, &bad) != IS_OK)
                goto parse_error;
            rc = push_tok(doc, IS_JSON_STRING, pos + 1, close);
            if (rc < 0)
                goto fail;
            doc->toks[stack[depth - 1]].size++;
            pos = close + 1;
            state = EXPECT_COLON;
            continue;
        }

        case EXPECT_VALUE_OR_CLOSE:
            if (c == ']')
                goto close_container;
            /* fall through */
        case EXPECT_VALUE:
            break;
        }

        /* A value starts at pos. */
        if (c == '{' || c == '[') {
            if (depth == JSON_MAX_DEPTH) {
                if (err_off)
                    *err_off = pos;
                return IS_ELIMIT;
            }
            rc = push_tok(doc, c == '{' ? IS_JSON_OBJECT : IS_JSON_ARRAY, pos, pos + 1);
            if (rc < 0)
                goto fail;
            if (depth > 0 && doc->toks[stack[depth - 1]].type == IS_JSON_ARRAY)
                doc->toks[stack[depth - 1]].size++;
            stack[depth++] = rc;
            pos++;
            state = c == '{' ? EXPECT_KEY_OR_CLOSE : EXPECT_VALUE_OR_CLOSE;
            continue;
        } else if (c == '"') {
            size_t close;
            if (scan_string(text, len, pos + 1, &close, &bad) != IS_OK)
                goto parse_error;
            rc = push_tok(doc, IS_JSON_STRING, pos + 1, close);
            pos = close + 1;
        } else if (c == '-' || is_digit(c)) {
            size_t end;
            if (scan_number(text, len, pos, &end, &bad) != IS_OK)
                goto parse_error;
            rc = push_tok(doc, IS_JSON_NUMBER, pos, end);
            pos = end;
        } else if (c == 't' && len - pos >= 4 && memcmp(text + pos, "true", 4) == 0) {
            rc = push_tok(doc, IS_JSON_TRUE, pos, pos + 4);
            pos += 4;
        } else if (c == 'f' && len - pos >= 5 && memcmp(text + pos, "false", 5) == 0) {
            rc = push_tok(doc, IS_JSON_FALSE, pos, pos + 5);
            pos += 5;
        } else if (c == 'n' && len - pos >= 4 && memcmp(text + pos, "null", 4) == 0) {
            rc = push_tok(doc, IS_JSON_NULL, pos, pos + 4);
            pos += 4;
        } else {
            bad = pos;
            goto parse_error;
        }
        if (rc < 0)
            goto fail;
        if (depth > 0 && doc->toks[stack[depth - 1]].type == IS_JSON_ARRAY)
            doc->toks[stack[depth - 1]].size++;
        goto value_done;

    close_container: {
            int open = stack[--depth];
            doc->toks[open].end = pos + 1;
            doc->toks[open].next = doc->ntoks;
            pos++;
        }
    value_done:
        state = depth == 0 ? EXPECT_END : EXPECT_COMMA_OR_CLOSE;
    }

parse_error:
    if (err_off)
        *err_off = bad;
    return IS_EPARSE;
fail:
    if (err_off)
        *err_off = pos;
    return rc;
}

void is_json_free(is_json_t *doc) {
    is_free(doc->toks);
    doc->toks = NULL;
    doc->ntoks = 0;
    doc->cap = 0;
}

/* Decodes one character of a validated string body at *pos into out (up to
 * 4 bytes) and returns the byte count. Lone surrogates, which the grammar
 * allows but UTF-8 cannot encode, become U+FFFD. */
static size_t decode_char(const char *s, size_t end, size_t *pos, char out[4]) {
    size_t p = *pos;
    if (s[p] != '\\') {
        out[0] = s[p];
        *pos = p + 1;
        return 1;
    }
    char e = s[p + 1];
    *pos = p + 2;
    switch (e) {
    case 'b': out[0] = '\b'; return 1;
    case 'f': out[0] = '\f'; return 1;
    case 'n': out[0] = '\n'; return 1;
    case 'r': out[0] = '\r'; return 1;
    case 't': out[0] = '\t'; return 1;
    case 'u': break;
    default: out[0] = e; return 1;  /* " \ / */
    }
    uint32_t cp = 0;
    for (int k = 2; k < 6; k++)
        cp = cp << 4 | (uint32_t)hex_value(s[p + k]);
    *pos = p + 6;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        /* A high surrogate pairs with an immediately following low one. */
        uint32_t lo = 0;
        if (p + 12 <= end && s[p + 6] == '\\' && s[p + 7] == 'u') {
            for (int k = 8; k < 12; k++)
                lo = lo << 4 | (uint32_t)hex_value(s[p + k]);
        }
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            *pos = p + 12;
        } else {
            cp = 0xFFFD;
        }
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        cp = 0xFFFD;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int valid_tok(const is_json_t *doc, int tok) {
    return doc && doc->toks && tok >= 0 && tok < doc->ntoks;
}

/* Compares the decoded string token tok with key[0..klen) without
 * allocating. */
static int key_equals(const is_json_t *doc, int tok, const char *key, size_t klen) {
    const is_json_tok_t *t = &doc->toks[tok];
    size_t pos = t->start, k = 0;
    while (pos < t->end) {
        char ch[4];
        size_t n = decode_char(doc->text, t->end, &pos, ch);
        if (k + n > klen || memcmp(key + k, ch, n) != 0)
            return 0;
        k += n;
    }
    return k == klen;
}

static int json_get_n(const is_json_t *doc, int obj, const char *key, size_t klen) {
    if (!valid_tok(doc, obj) || doc->toks[obj].type != IS_JSON_OBJECT)
        return -1;
    int i = obj + 1;
    for (int n = 0; n < doc->toks[obj].size; n++) {
        if (key_equals(doc, i, key, klen))
            return i + 1;
        i = doc->toks[i + 1].next;  /* skip the value and its children */
    }
    return -1;
}

int is_json_get(const is_json_t *doc, int obj, const char *key) {
    return json_get_n(doc, obj, key, strlen(key));
}

int is_json_path(const is_json_t *doc, int obj, const char *path) {
    int cur = obj;
    const char *seg = path;
    for (;;) {
        const char *dot = strchr(seg, '.');
        size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
        cur = json_get_n(doc, cur, seg, n);
        if (cur < 0 || !dot)
            return cur;
        seg = dot + 1;
    }
}

int is_json_strdup(const is_json_t *doc, int tok, char **out) {
    *out = NULL;
    if (!valid_tok(doc, tok) || doc->toks[tok].type != IS_JSON_STRING)
        return IS_EINVAL;
    const is_json_tok_t *t = &doc->toks[tok];
    /* Decoding never lengthens: "\n" is 2 bytes for 1, "\uXXXX" 6 for at
     * most 3, a surrogate pair 12 for 4. */
    char *s = is_malloc(t->end - t->start + 1);
    if (!s)
        return IS_ENOMEM;
    size_t pos = t->start, n = 0;
    while (pos < t->end) {
        char ch[4];
        size_t k = decode_char(doc->text, t->end, &pos, ch);
        /* "\u0000" cannot be carried by a C string; refusing beats handing
         * out a silently shortened name. */
        if (k == 1 && ch[0] == '\0') {
            is_free(s);
            return IS_EINVAL;
        }
        memcpy(s + n, ch, k);
        n += k;
    }
    s[n] = '\0';
    *out = s;
    return IS_OK;
}

int is_json_int(const is_json_t *doc, int tok, long long *out) {
    if (!valid_tok(doc, tok) || doc->toks[tok].type != IS_JSON_NUMBER)
        return IS_EINVAL;
    const is_json_tok_t *t = &doc->toks[tok];
    const char *s = doc->text + t->start;
    size_t n = t->end - t->start, i = 0;
    int neg = s[0] == '-';
    if (neg)
        i++;
    /* Accumulate negatively so LLONG_MIN is representable. */
    long long v = 0;
    for (; i < n; i++) {
        if (!is_digit(s[i]))
            return IS_EINVAL;  /* fraction or exponent: not an integer */
        int d = s[i] - '0';
        if (v < (LLONG_MIN + d) / 10)
            return IS_ELIMIT;
        v = v * 10 - d;
    }
    if (!neg) {
        if (v == LLONG_MIN)
            return IS_ELIMIT;
        v = -v;
    }
    *out = v;
    return IS_OK;
}

const char *is_json_raw(const is_json_t *doc, int tok, size_t *len) {
    if (!valid_tok(doc, tok)) {
        *len = 0;
        return NULL;
    }
    const is_json_tok_t *t = &doc->toks[tok];
    size_t start = t->start, end = t->end;
    if (t->type == IS_JSON_STRING) {
        start--;
        end++;
    }
    *len = end - start;
    return doc->text + start;
}

/* One past the last byte of a value, a string's closing quote included. */
static size_t raw_end(const is_json_tok_t *t) {
    return t->end + (t->type == IS_JSON_STRING ? 1 : 0);
}

int is_json_member_span(const is_json_t *doc, int obj, const char *path, size_t *start, size_t *end) {
    const char *last = strrchr(path, '.');
    int parent = obj;
    if (last) {
        /* The parent's path, without the last segment. */
        char head[256];
        size_t n = (size_t)(last - path);
        if (n >= sizeof head) return IS_EINVAL;
        memcpy(head, path, n);
        head[n] = '\0';
        parent = is_json_path(doc, obj, head);
    }
    const char *key = last ? last + 1 : path;
    if (!valid_tok(doc, parent) || doc->toks[parent].type != IS_JSON_OBJECT) return IS_ENOTFOUND;
    int size = doc->toks[parent].size, prev_val = -1;
    int k = parent + 1;
    for (int n = 0; n < size; n++) {
        int val = k + 1, next_key = doc->toks[val].next;
        if (key_equals(doc, k, key, strlen(key))) {
            size_t key_quote = doc->toks[k].start - 1;
            if (n + 1 < size) {
                /* Up to the next key's quote: the comma goes with it. */
                *start = key_quote;
                *end = doc->toks[next_key].start - 1;
            } else if (prev_val >= 0) {
                /* The last member takes the comma before it. */
                *start = raw_end(&doc->toks[prev_val]);
                *end = raw_end(&doc->toks[val]);
            } else {
                *start = key_quote;
                *end = raw_end(&doc->toks[val]);
            }
            return IS_OK;
        }
        prev_val = val;
        k = next_key;
    }
    return IS_ENOTFOUND;
}
