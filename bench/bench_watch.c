/* The host's watch hot path: newline framing (is_framer), JSON tokenizing
 * (is_json) and the informer's cache upsert (is_map of raw objects), fed
 * realistic InternalRequest watch events in random chunk sizes, as libcurl
 * hands them over.
 *
 * is_informer's event handling is static and sits behind an HTTP watch, so
 * this program drives the very functions it calls, in the same order, on
 * the same data: per line, is_json_parse of the event, is_json_get of
 * "type" and "object", is_json_raw of the object; metadata.name/namespace/
 * resourceVersion read from the same tokens (no second parse); then a copy of the
 * object bytes and its resourceVersion stored under "namespace/name" with
 * is_map_set, the replaced copy freed. The cache entry has the informer's
 * layout (bytes, length, resourceVersion).
 *
 * Usage: bench_watch [events] [requests] [big_events]
 *   events      watch events of ~2 KiB (default 200000)
 *   requests    distinct requests they update (default 20000)
 *   big_events  events of ~1.5 MiB in the second pass (default 64) */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "is_alloc.h"
#include "is_err.h"
#include "is_framer.h"
#include "is_json.h"
#include "is_map.h"

/* ---- generated events (libc memory, see bench.h) ---------------------- */

typedef struct {
    char *p;
    size_t len, cap;
} text_t;

static void text_reserve(text_t *t, size_t extra) {
    if (t->len + extra + 1 <= t->cap) return;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + extra + 1) cap *= 2;
    char *p = realloc(t->p, cap);
    if (!p) {
        fprintf(stderr, "bench_watch: out of memory generating events\n");
        exit(1);
    }
    t->p = p;
    t->cap = cap;
}

__attribute__((format(printf, 2, 3)))
static void text_printf(text_t *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    text_reserve(t, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(t->p + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

static void text_fill(text_t *t, uint64_t *rng, size_t n) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    text_reserve(t, n);
    for (size_t i = 0; i < n; i++) t->p[t->len + i] = b64[bench_rand(rng) & 63];
    t->len += n;
}

static void hex(char *out, size_t n, uint64_t seed) {
    static const char digits[] = "0123456789abcdef";
    uint64_t s = seed | 1;
    for (size_t i = 0; i < n; i++) out[i] = digits[bench_rand(&s) & 15];
    out[n] = '\0';
}

#define STAGES 10

/* One watch event line for request idx at lifecycle stage (0 = ADDED, new;
 * 1 = finalizer added; 2..STAGES-2 = running, status refreshed; the last =
 * succeeded with results). payload > 0 adds a spec param of that many bytes
 * (large release manifests do this). Shaped like what the API server sends,
 * managedFields included. */
static void gen_event(text_t *t, uint64_t *rng, long idx, int stage, unsigned long long rv, size_t payload) {
    char uid[33], digest[65], rev[41];
    hex(uid, 32, (uint64_t)idx * 7919u + 1);
    hex(digest, 64, (uint64_t)idx * 104729u + 3);
    hex(rev, 40, (uint64_t)idx * 1299709u + 5);
    const char *type = stage == 0 ? "ADDED" : "MODIFIED";
    text_printf(t,
        "{\"type\":\"%s\",\"object\":{\"apiVersion\":\"appstudio.redhat.com/v1alpha1\",\"kind\":\"InternalRequest\","
        "\"metadata\":{\"creationTimestamp\":\"2026-11-23T09:58:12Z\",%s\"generation\":1,"
        "\"labels\":{\"app.kubernetes.io/part-of\":\"release\",\"release.appstudio.openshift.io/name\":\"release-%06ld\","
        "\"appstudio.openshift.io/application\":\"app-%ld\"},"
        "\"annotations\":{\"release.appstudio.openshift.io/author\":\"user%ld@example.com\","
        "\"description\":\"Push \\\"app-%ld\\\" \\u2013 \\u00e9tape %d\"},"
        "\"managedFields\":[{\"apiVersion\":\"appstudio.redhat.com/v1alpha1\",\"fieldsType\":\"FieldsV1\","
        "\"fieldsV1\":{\"f:metadata\":{\"f:labels\":{\".\":{},\"f:app.kubernetes.io/part-of\":{},"
        "\"f:release.appstudio.openshift.io/name\":{}}},\"f:spec\":{\".\":{},\"f:params\":{\".\":{},\"f:snapshot\":{},"
        "\"f:releasePlan\":{},\"f:sourceImage\":{}},\"f:pipeline\":{\".\":{},\"f:pipelineRef\":{}},"
        "\"f:serviceAccount\":{},\"f:timeouts\":{}}},\"manager\":\"release-service\",\"operation\":\"Update\","
        "\"time\":\"2026-11-23T09:58:12Z\"},{\"apiVersion\":\"appstudio.redhat.com/v1alpha1\",\"fieldsType\":\"FieldsV1\","
        "\"fieldsV1\":{\"f:status\":{\".\":{},\"f:conditions\":{},\"f:pipelineRun\":{},\"f:startTime\":{}}},"
        "\"manager\":\"internal-services\",\"operation\":\"Update\",\"subresource\":\"status\","
        "\"time\":\"2026-11-23T10:00:%02dZ\"}],"
        "\"name\":\"release-%06ld-push\",\"namespace\":\"tenant-%ld\",\"resourceVersion\":\"%llu\","
        "\"uid\":\"%.8s-%.4s-4%.3s-8%.3s-%.12s\"},"
        "\"spec\":{\"params\":{\"snapshot\":\"snap-%06ld\",\"releasePlan\":\"tenant-%ld/push-to-prod\","
        "\"sourceImage\":\"quay.io/tenant-%ld/app-%ld@sha256:%s\"",
        type, stage >= 1 ? "\"finalizers\":[\"appstudio.redhat.com/internal-services\"]," : "",
        idx, idx % 97, idx, idx, stage, stage, idx, idx % 40, rv,
        uid, uid + 8, uid + 12, uid + 15, uid + 18,
        idx, idx % 40, idx % 40, idx % 97, digest);
    if (payload) {
        text_printf(t, ",\"manifest\":\"");
        text_fill(t, rng, payload);
        text_printf(t, "\"");
    }
    text_printf(t,
        "},\"pipeline\":{\"pipelineRef\":{\"resolver\":\"git\",\"params\":["
        "{\"name\":\"url\",\"value\":\"https://github.com/konflux-ci/release-service-catalog.git\"},"
        "{\"name\":\"revision\",\"value\":\"%s\"},"
        "{\"name\":\"pathInRepo\",\"value\":\"pipelines/internal/push-artifacts/push-artifacts.yaml\"}]}},"
        "\"serviceAccount\":\"release-service-account\",\"timeouts\":{\"pipeline\":\"2h0m0s\"}}",
        rev);
    if (stage >= 2) {
        int done = stage == STAGES - 1;
        text_printf(t,
            ",\"status\":{\"conditions\":[{\"lastTransitionTime\":\"2026-11-23T10:00:%02dZ\","
            "\"message\":\"PipelineRun internal-services/ir-release-%06ld-%.16s %s\","
            "\"observedGeneration\":1,\"reason\":\"%s\",\"status\":\"%s\",\"type\":\"Succeeded\"}],"
            "\"pipelineRun\":\"internal-services/ir-release-%06ld-%.16s\",\"startTime\":\"2026-11-23T10:00:02Z\"",
            stage, idx, uid, done ? "succeeded: Tasks Completed: 2 (Failed: 0, Cancelled 0), Skipped: 0" : "is running",
            done ? "Succeeded" : "Running", done ? "True" : "Unknown", idx, uid);
        if (done)
            text_printf(t,
                ",\"completionTime\":\"2026-11-23T10:04:31Z\",\"results\":{\"digest\":\"sha256:%s\","
                "\"tags\":\"[\\\"v1.2.%ld\\\",\\\"latest\\\"]\",\"image\":\"{\\\"digest\\\":\\\"sha256:%.8s\\\","
                "\\\"url\\\":\\\"quay.io/tenant-%ld/app-%ld\\\"}\"}",
                digest, idx % 100, digest, idx % 40, idx % 97);
        text_printf(t, "}");
    }
    text_printf(t, "}}\n");
}

static void gen_bookmark(text_t *t, unsigned long long rv) {
    text_printf(t, "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"InternalRequest\","
                   "\"apiVersion\":\"appstudio.redhat.com/v1alpha1\",\"metadata\":{\"resourceVersion\":\"%llu\","
                   "\"annotations\":{\"k8s.io/initial-events-end\":\"true\"}}}}\n", rv);
}

/* ---- the informer's path ---------------------------------------------- */

/* The informer's cache entry. */
typedef struct {
    char *json;
    size_t len;
    char *rv;
} cached_t;

typedef struct {
    is_map_t cache;
    char *rv;               /* last resourceVersion, as the informer keeps */
    unsigned long events, adds, updates, bookmarks;
    int error;
} sink_t;

static void cached_free(void *p) {
    cached_t *c = p;
    if (!c) return;
    is_free(c->json);
    is_free(c->rv);
    is_free(c);
}

static int remember_rv(sink_t *s, char *rv) {
    if (!rv) return IS_OK;
    is_free(s->rv);
    s->rv = rv;
    return IS_OK;
}

/* metadata.namespace/name and resourceVersion of the object at token obj
 * of the already parsed event, as the informer reads them. */
static int identify(const is_json_t *doc, int obj, char *key, size_t keycap, char **rv) {
    char *ns = NULL, *name = NULL;
    int rc = IS_EPARSE;
    int meta = is_json_get(doc, obj, "metadata");
    if (meta >= 0) {
        int t_name = is_json_get(doc, meta, "name");
        int t_ns = is_json_get(doc, meta, "namespace");
        int t_rv = is_json_get(doc, meta, "resourceVersion");
        rc = t_name >= 0 ? is_json_strdup(doc, t_name, &name) : IS_EPARSE;
        if (rc == IS_OK && t_ns >= 0) rc = is_json_strdup(doc, t_ns, &ns);
        if (rc == IS_OK && t_rv >= 0) rc = is_json_strdup(doc, t_rv, rv);
        if (rc == IS_OK) snprintf(key, keycap, "%s/%s", ns ? ns : "", name);
    }
    is_free(ns);
    is_free(name);
    return rc;
}

/* As the informer does: the copy leaves metadata.managedFields out. */
static int upsert(sink_t *s, const char *key, const is_json_t *doc, int t_obj, const char *rv) {
    size_t len, a = 0, b = 0, ms, me;
    const char *obj = is_json_raw(doc, t_obj, &len);
    if (is_json_member_span(doc, t_obj, "metadata.managedFields", &ms, &me) == IS_OK) {
        a = ms - doc->toks[t_obj].start;
        b = me - doc->toks[t_obj].start;
    }
    cached_t *c = is_calloc(1, sizeof *c), *old = NULL;
    if (!c || !(c->json = is_malloc(len - (b - a) + 1)) || !(c->rv = is_strdup(rv ? rv : ""))) {
        cached_free(c);
        return IS_ENOMEM;
    }
    memcpy(c->json, obj, a);
    memcpy(c->json + a, obj + b, len - b);
    c->len = len - (b - a);
    c->json[c->len] = '\0';
    int rc = is_map_set(&s->cache, key, c, (void **)&old);
    if (rc != IS_OK) {
        cached_free(c);
        return rc;
    }
    if (old) s->updates++;
    else s->adds++;
    cached_free(old);
    return IS_OK;
}

static int on_line(const char *line, size_t len, void *data) {
    sink_t *s = data;
    is_json_t doc;
    char *type = NULL, *rv = NULL;
    char key[256];
    int rc = is_json_parse(&doc, line, len, NULL);
    int t_type = rc == IS_OK ? is_json_get(&doc, 0, "type") : -1;
    int t_obj = rc == IS_OK ? is_json_get(&doc, 0, "object") : -1;
    if (t_type < 0 || t_obj < 0 || is_json_strdup(&doc, t_type, &type) != IS_OK) {
        rc = rc == IS_OK ? IS_EPARSE : rc;
        goto out;
    }
    s->events++;
    if (strcmp(type, "BOOKMARK") == 0) {
        int t_rv = is_json_path(&doc, t_obj, "metadata.resourceVersion");
        if (t_rv >= 0 && (rc = is_json_strdup(&doc, t_rv, &rv)) == IS_OK) {
            rc = remember_rv(s, rv);
            rv = NULL;
        }
        s->bookmarks++;
        goto out;
    }
    if ((rc = identify(&doc, t_obj, key, sizeof key, &rv)) != IS_OK) goto out;
    rc = upsert(s, key, &doc, t_obj, rv);
    if (rc == IS_OK) {
        char *copy = is_strdup(rv);
        rc = copy ? remember_rv(s, copy) : IS_ENOMEM;
    }
out:
    if (rc != IS_OK) s->error = rc;
    is_free(type);
    is_free(rv);
    is_json_free(&doc);
    return rc == IS_OK ? 0 : 1;
}

/* Breakdown callbacks: framing alone, and framing plus one parse of the
 * event line (without the identity lookup and the cache). */
static int on_line_count(const char *line, size_t len, void *data) {
    (void)line;
    (void)len;
    ((sink_t *)data)->events++;
    return 0;
}

static int on_line_parse(const char *line, size_t len, void *data) {
    is_json_t doc;
    int rc = is_json_parse(&doc, line, len, NULL);
    is_json_free(&doc);
    ((sink_t *)data)->events++;
    return rc == IS_OK ? 0 : 1;
}

/* ---- the passes ------------------------------------------------------- */

typedef struct {
    double seconds;         /* in is_framer_feed and below, only */
    size_t bytes;
    size_t peak_used;       /* is_alloc_used() high-water mark between chunks */
} feed_stats_t;

/* Feeds text to the framer in random chunks of 1..max_chunk bytes. */
static void feed_with(is_framer_t *f, is_framer_line_cb cb, sink_t *s, const text_t *t, size_t max_chunk,
                      uint64_t *rng, feed_stats_t *st) {
    size_t pos = 0;
    double t0 = bench_now();
    while (pos < t->len) {
        size_t n = bench_between(rng, 1, max_chunk);
        if (n > t->len - pos) n = t->len - pos;
        int rc = is_framer_feed(f, t->p + pos, n, cb, s);
        if (rc != IS_OK) {
            fprintf(stderr, "bench_watch: feed failed: %s\n", is_strerror(s->error ? s->error : rc));
            exit(1);
        }
        size_t used = is_alloc_used();
        if (used > st->peak_used) st->peak_used = used;
        pos += n;
    }
    st->seconds += bench_now() - t0;
    st->bytes += t->len;
}

static void feed(is_framer_t *f, sink_t *s, const text_t *t, size_t max_chunk, uint64_t *rng,
                 feed_stats_t *st) {
    feed_with(f, on_line, s, t, max_chunk, rng, st);
}

static void sink_init(sink_t *s) {
    memset(s, 0, sizeof *s);
    is_map_init(&s->cache);
}

static void sink_free(sink_t *s) {
    is_map_free(&s->cache, cached_free);
    is_free(s->rv);
}

/* libcurl hands a watch body over in pieces of at most its buffer size
 * (16 KiB by default); anything from one byte up happens. */
#define MAX_CHUNK 16384
#define BATCH_EVENTS 4096

static size_t cached_json_bytes(const sink_t *s) {
    size_t iter = 0, total = 0;
    const char *key;
    void *value;
    while (is_map_next(&s->cache, &iter, &key, &value)) total += ((cached_t *)value)->len;
    return total;
}

static void pass_small(long events, long requests) {
    uint64_t rng = 0x9E3779B97F4A7C15ULL;
    text_t t = { 0 };
    is_framer_t f, f_frame, f_parse;
    sink_t s, s_frame, s_parse;
    feed_stats_t st = { 0 }, st_frame = { 0 }, st_parse = { 0 };
    size_t base = is_alloc_used();
    is_framer_init(&f_frame, 0);
    is_framer_init(&f_parse, 0);
    sink_init(&s_frame);
    sink_init(&s_parse);
    is_framer_init(&f, 0);
    sink_init(&s);
    unsigned long long rv = 1000000;
    for (long done = 0; done < events;) {
        t.len = 0;
        for (int i = 0; i < BATCH_EVENTS && done < events; i++, done++) {
            /* Every request goes through its lifecycle; their events
             * interleave, as many requests run at once. */
            long idx = done % requests;
            int stage = (int)((done / requests) % STAGES);
            gen_event(&t, &rng, idx, stage, ++rv, 0);
            if (done % 1000 == 999) gen_bookmark(&t, rv);
        }
        uint64_t chunks = rng;   /* the same chunk sizes for all three */
        feed_with(&f_frame, on_line_count, &s_frame, &t, MAX_CHUNK, &(uint64_t){ chunks }, &st_frame);
        feed_with(&f_parse, on_line_parse, &s_parse, &t, MAX_CHUNK, &(uint64_t){ chunks }, &st_parse);
        feed(&f, &s, &t, MAX_CHUNK, &rng, &st);
    }
    /* The breakdown's framers and sinks are not part of the cache. */
    sink_free(&s_frame);
    sink_free(&s_parse);
    is_framer_free(&f_frame);
    is_framer_free(&f_parse);
    size_t cached = s.cache.len;
    size_t used = is_alloc_used() - base;
    size_t json = cached_json_bytes(&s);
    printf("watch pass: %ld events (%lu bookmarks) over %ld requests, %.1f MB, random chunks 1..%d B\n",
           events, s.bookmarks, requests, (double)st.bytes / 1e6, MAX_CHUNK);
    printf("  %.0f events/s, %.1f MB/s (%.2f s in framer+json+cache)\n", (double)s.events / st.seconds,
           (double)st.bytes / 1e6 / st.seconds, st.seconds);
    printf("  cache: %zu objects, mean object %.0f B, is_alloc_used %zu B = %.0f B per cached object "
           "(%.0f B over the object's own bytes)\n",
           cached, (double)json / (double)cached, used, (double)used / (double)cached,
           (double)(used - json) / (double)cached);
    printf("  adds %lu, updates %lu\n", s.adds, s.updates);
    printf("  breakdown: framing alone %.0f MB/s; framing + parse of the event %.0f MB/s; "
           "the rest (object parse, copy, map) is the remainder\n",
           (double)st_frame.bytes / 1e6 / st_frame.seconds, (double)st_parse.bytes / 1e6 / st_parse.seconds);
    printf("  share of time: framing %.0f%%, event parse %.0f%%, identity parse + copy + map %.0f%%\n",
           100 * st_frame.seconds / st.seconds, 100 * (st_parse.seconds - st_frame.seconds) / st.seconds,
           100 * (st.seconds - st_parse.seconds) / st.seconds);
    bench_figure("watch_events_per_s", (double)s.events / st.seconds, "events/s");
    bench_figure("watch_mb_per_s", (double)st.bytes / 1e6 / st.seconds, "MB/s");
    bench_figure("watch_mean_object", (double)json / (double)cached, "B");
    bench_figure("watch_cache_bytes_per_object", (double)used / (double)cached, "B");
    sink_free(&s);
    is_framer_free(&f);
    free(t.p);
}

static void pass_big(long events) {
    uint64_t rng = 0xD1B54A32D192ED03ULL;
    text_t t = { 0 };
    is_framer_t f;
    sink_t s;
    feed_stats_t st = { 0 };
    const long requests = 8;
    const size_t payload = (size_t)3 << 19;   /* 1.5 MiB */
    size_t base = is_alloc_used();
    is_framer_init(&f, 0);
    sink_init(&s);
    st.peak_used = base;
    unsigned long long rv = 5000000;
    for (long done = 0; done < events; done++) {
        t.len = 0;
        gen_event(&t, &rng, done % requests, (int)((done / requests) % STAGES), ++rv, payload);
        feed(&f, &s, &t, MAX_CHUNK, &rng, &st);
    }
    size_t json = cached_json_bytes(&s);
    size_t used = is_alloc_used() - base;
    printf("big-event pass: %ld events of %.2f MiB over %ld requests, random chunks 1..%d B\n", events,
           (double)st.bytes / (double)events / 1048576.0, requests, MAX_CHUNK);
    printf("  %.1f events/s, %.1f MB/s (%.2f s)\n", (double)s.events / st.seconds,
           (double)st.bytes / 1e6 / st.seconds, st.seconds);
    printf("  cache: %zu objects holding %.1f MiB, is_alloc_used %.1f MiB; peak during feed %.1f MiB "
           "(cache + one event being framed)\n",
           s.cache.len, (double)json / 1048576.0, (double)used / 1048576.0,
           (double)(st.peak_used - base) / 1048576.0);
    bench_figure("watch_big_events_per_s", (double)s.events / st.seconds, "events/s");
    bench_figure("watch_big_mb_per_s", (double)st.bytes / 1e6 / st.seconds, "MB/s");
    bench_figure("watch_big_peak_over_cache", (double)(st.peak_used - base - json) / 1048576.0, "MiB");
    sink_free(&s);
    is_framer_free(&f);
    free(t.p);
}

int main(int argc, char **argv) {
    long events = bench_arg(argc, argv, 1, 200000);
    long requests = bench_arg(argc, argv, 2, 20000);
    long big = bench_arg(argc, argv, 3, 64);
    pass_small(events, requests);
    pass_big(big);
    if (is_alloc_used() != 0) {
        fprintf(stderr, "bench_watch: %zu bytes still allocated at exit\n", is_alloc_used());
        return 1;
    }
    return 0;
}
