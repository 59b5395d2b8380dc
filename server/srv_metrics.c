/* /metrics: Prometheus text of the server's counters. */
#include <inttypes.h>

#include "srv.h"

static const char *const refusal_names[SRV_REF_COUNT] = {
    [SRV_REF_MALFORMED] = "malformed",
    [SRV_REF_TOO_BIG] = "too_big",
    [SRV_REF_UNKNOWN_FEED] = "unknown_feed",
    [SRV_REF_REVOKED] = "revoked",
    [SRV_REF_BAD_SIGNATURE] = "bad_signature",
    [SRV_REF_GAP] = "gap",
    [SRV_REF_FORK] = "fork",
    [SRV_REF_AUTH] = "unauthorized",
    [SRV_REF_CLOCK] = "clock",
    [SRV_REF_REPLAY] = "replay",
    [SRV_REF_ENCODING] = "encoding",
    [SRV_REF_FORBIDDEN] = "forbidden",
    [SRV_REF_UNAVAILABLE] = "unavailable",
    [SRV_REF_BAD_ENTRY] = "bad_entry",
};

#define LOAD(x) ((unsigned long long)atomic_load(&(x)))

void
srv_metrics_render(struct srv *s, struct fs_buf *b)
{
    static const char *const le[] = {"10", "25", "50", "100", "250", "500", "1000", "+Inf"};
    unsigned long long cum = 0;
    size_t i;
    enum fs_rc rc = FS_OK;

#define P(...)                                                                                     \
    do {                                                                                           \
        if (!rc)                                                                                   \
            rc = fs_buf_printf(b, __VA_ARGS__);                                                    \
    } while (0)
    P("# TYPE fieldsync_requests_total counter\nfieldsync_requests_total %llu\n",
      LOAD(s->m.requests));
    P("# TYPE fieldsync_pushes_applied_total counter\nfieldsync_pushes_applied_total %llu\n",
      LOAD(s->m.pushes_applied));
    P("# HELP fieldsync_pushes_held_total pushes answered from the header alone (replays)\n"
      "# TYPE fieldsync_pushes_held_total counter\nfieldsync_pushes_held_total %llu\n",
      LOAD(s->m.pushes_held));
    P("# TYPE fieldsync_entries_stored_total counter\nfieldsync_entries_stored_total %llu\n",
      LOAD(s->m.entries_stored));
    P("# TYPE fieldsync_inflates_total counter\nfieldsync_inflates_total %llu\n",
      LOAD(s->m.inflates));
    P("# TYPE fieldsync_bytes_in_total counter\nfieldsync_bytes_in_total %llu\n",
      LOAD(s->m.bytes_in));
    P("# TYPE fieldsync_deadline_cuts_total counter\nfieldsync_deadline_cuts_total %llu\n",
      LOAD(s->m.deadline_cuts));
    P("# TYPE fieldsync_refused_total counter\n");
    for (i = 0; i < SRV_REF_COUNT; i++)
        P("fieldsync_refused_total{reason=\"%s\"} %llu\n", refusal_names[i], LOAD(s->m.refused[i]));
    P("# TYPE fieldsync_push_latency_ms histogram\n");
    for (i = 0; i < FS_ARRAY_LEN(le); i++) {
        cum += LOAD(s->m.push_latency_bucket[i]);
        P("fieldsync_push_latency_ms_bucket{le=\"%s\"} %llu\n", le[i], cum);
    }
    P("fieldsync_push_latency_ms_sum %llu\nfieldsync_push_latency_ms_count %llu\n",
      LOAD(s->m.push_latency_sum_ms), cum);
#undef P
    if (rc)
        fs_buf_reset(b);
}
