/* The compiled core of the Wing-Gong-Lowe search (bench/checker/wgl.py holds the reference).
 *
 * It walks exactly as the pure-Python search does (same order, same memo, same step counts, same
 * "stuck" op), on ops encoded as integers by bench/checker/native.py, with the built-in models'
 * step functions written out here (opcodes below). Pure Python stays the reference: property tests
 * hold the two to identical outcomes. A history this core cannot represent (more than 62 required
 * ops linearizable ahead of the frontier) is answered "unsupported" and the caller falls back.
 *
 * Input: a buffer of int64, FIELDS per op: call position, return position (-1: optional),
 * opcode, a, b, twin signature (-1: none; optional ops with equal signatures are interchangeable).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FIELDS 6
#define NONE_VALUE INT64_MIN
#define MEMO_PER_STATE 64
#define MAX_ABOVE_BIT 62

enum {
    OP_ILLEGAL = 0,
    OP_READ = 1,         /* s0 == a */
    OP_READ_ANY = 2,     /* always legal, no change */
    OP_WRITE = 3,        /* s0 = a */
    OP_CAS = 4,          /* s0 == a -> s0 = b */
    OP_CAS_FAILED = 5,   /* s0 != a */
    OP_ACQUIRE = 6,      /* s0 == 0 -> s0 = a */
    OP_RELEASE_ANY = 7,  /* s0 != 0 -> s0 = 0 */
    OP_RELEASE_OWN = 8,  /* s0 == a -> s0 = 0 */
    OP_OWNER = 9,        /* s0 == a */
    OP_F_ACQUIRE = 10,   /* s0 == 0; token b (NONE: unknown) above s1 -> (a, b, b) */
    OP_F_RELEASE = 11,   /* s0 == a -> (0, s1, NONE) */
    OP_F_OWNER = 12,     /* s0 == a, and a known token b matches a known held token s2 */
};

enum { RESULT_DONE = 0, RESULT_STEP_LIMIT = 1, RESULT_UNSUPPORTED = 2, RESULT_ERROR = -1 };

typedef struct {
    int64_t code, a, b;
} NOp;

static inline int step(const int64_t *s, const NOp *op, int64_t *out) {
    out[0] = s[0];
    out[1] = s[1];
    out[2] = s[2];
    switch (op->code) {
    case OP_READ:
        return s[0] == op->a;
    case OP_READ_ANY:
        return 1;
    case OP_WRITE:
        out[0] = op->a;
        return 1;
    case OP_CAS:
        if (s[0] != op->a) return 0;
        out[0] = op->b;
        return 1;
    case OP_CAS_FAILED:
        return s[0] != op->a;
    case OP_ACQUIRE:
        if (s[0] != 0) return 0;
        out[0] = op->a;
        return 1;
    case OP_RELEASE_ANY:
        if (s[0] == 0) return 0;
        out[0] = 0;
        return 1;
    case OP_RELEASE_OWN:
        if (s[0] != op->a) return 0;
        out[0] = 0;
        return 1;
    case OP_OWNER:
        return s[0] == op->a;
    case OP_F_ACQUIRE:
        if (s[0] != 0) return 0;
        if (op->b == NONE_VALUE) {
            out[0] = op->a;
            out[2] = NONE_VALUE;
            return 1;
        }
        if (s[1] != NONE_VALUE && op->b <= s[1]) return 0;
        out[0] = op->a;
        out[1] = op->b;
        out[2] = op->b;
        return 1;
    case OP_F_RELEASE:
        if (s[0] != op->a) return 0;
        out[0] = 0;
        out[2] = NONE_VALUE;
        return 1;
    case OP_F_OWNER:
        if (s[0] != op->a) return 0;
        if (s[0] != 0 && op->b != NONE_VALUE && s[2] != NONE_VALUE && op->b != s[2]) return 0;
        return 1;
    default:
        return 0;
    }
}

/* ---- an open-addressing hash table of fixed-width uint64 keys with an int64 value ---- */

typedef struct {
    size_t width, cap, count;
    uint64_t *keys;
    int64_t *vals;
    uint8_t *used;
} Table;

static uint64_t hash_words(const uint64_t *k, size_t width) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ width;
    for (size_t i = 0; i < width; i++) {
        h ^= k[i] + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
        h *= 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 31;
    }
    return h;
}

static int table_init(Table *t, size_t width, size_t cap) {
    t->width = width;
    t->cap = cap;
    t->count = 0;
    t->keys = malloc(sizeof(uint64_t) * width * cap);
    t->vals = malloc(sizeof(int64_t) * cap);
    t->used = calloc(cap, 1);
    return t->keys && t->vals && t->used;
}

static void table_free(Table *t) {
    free(t->keys);
    free(t->vals);
    free(t->used);
    t->keys = NULL;
    t->vals = NULL;
    t->used = NULL;
}

static int table_grow(Table *t);

/* The slot holding ``key``: *found says whether it was there; a new slot is claimed (value 0). */
static int64_t *table_slot(Table *t, const uint64_t *key, int *found) {
    if ((t->count + 1) * 2 > t->cap && !table_grow(t)) return NULL;
    size_t mask = t->cap - 1, w = t->width;
    size_t i = (size_t)hash_words(key, w) & mask;
    while (t->used[i]) {
        if (memcmp(t->keys + i * w, key, w * sizeof(uint64_t)) == 0) {
            *found = 1;
            return t->vals + i;
        }
        i = (i + 1) & mask;
    }
    t->used[i] = 1;
    memcpy(t->keys + i * w, key, w * sizeof(uint64_t));
    t->vals[i] = 0;
    t->count++;
    *found = 0;
    return t->vals + i;
}

static int table_grow(Table *t) {
    Table bigger;
    if (!table_init(&bigger, t->width, t->cap * 2)) {
        table_free(&bigger);
        return 0;
    }
    size_t w = t->width;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->used[i]) continue;
        size_t mask = bigger.cap - 1;
        size_t j = (size_t)hash_words(t->keys + i * w, w) & mask;
        while (bigger.used[j]) j = (j + 1) & mask;
        bigger.used[j] = 1;
        memcpy(bigger.keys + j * w, t->keys + i * w, w * sizeof(uint64_t));
        bigger.vals[j] = t->vals[i];
        bigger.count++;
    }
    table_free(t);
    *t = bigger;
    return 1;
}

/* ---- sets of placed optional ops, interned: a set is an id, its words live in an arena ---- */

typedef struct {
    size_t words, count, cap;
    uint64_t *arena;
    uint64_t *scratch;
    Table index;
} SetStore;

static int sets_init(SetStore *s, size_t optional_count) {
    s->words = optional_count / 64 + 1;
    s->count = 0;
    s->cap = 64;
    s->arena = calloc(s->cap * s->words, sizeof(uint64_t));
    s->scratch = calloc(s->words, sizeof(uint64_t));
    if (!s->arena || !s->scratch || !table_init(&s->index, s->words, 64)) return 0;
    return 1;
}

static void sets_free(SetStore *s) {
    free(s->arena);
    free(s->scratch);
    table_free(&s->index);
}

/* Intern the set in s->scratch; returns its id or -1 when out of memory. */
static int64_t sets_intern(SetStore *s) {
    int found;
    int64_t *slot = table_slot(&s->index, s->scratch, &found);
    if (!slot) return -1;
    if (found) return *slot;
    if (s->count == s->cap) {
        uint64_t *bigger = realloc(s->arena, sizeof(uint64_t) * s->words * s->cap * 2);
        if (!bigger) return -1;
        s->arena = bigger;
        s->cap *= 2;
    }
    memcpy(s->arena + s->count * s->words, s->scratch, s->words * sizeof(uint64_t));
    *slot = (int64_t)s->count;
    return (int64_t)s->count++;
}

static inline int sets_has(const SetStore *s, int64_t id, int64_t bit) {
    return (int)((s->arena[id * s->words + bit / 64] >> (bit % 64)) & 1);
}

static int64_t sets_with(SetStore *s, int64_t id, int64_t bit) {
    memcpy(s->scratch, s->arena + id * s->words, s->words * sizeof(uint64_t));
    s->scratch[bit / 64] |= 1ULL << (bit % 64);
    return sets_intern(s);
}

/* True when ``earlier`` is a subset of ``placed``. */
static inline int sets_subset(const SetStore *s, int64_t earlier, int64_t placed) {
    const uint64_t *e = s->arena + earlier * s->words, *p = s->arena + placed * s->words;
    for (size_t i = 0; i < s->words; i++)
        if (e[i] & ~p[i]) return 0;
    return 1;
}

/* ---- per-configuration lists of placed sets (dominance memo) ---- */

typedef struct {
    int64_t *items;
    int64_t n, cap;
} IdList;

typedef struct {
    IdList *lists;
    int64_t n, cap;
} Lists;

static int64_t lists_new(Lists *l, int64_t first) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 256;
        IdList *bigger = realloc(l->lists, sizeof(IdList) * (size_t)cap);
        if (!bigger) return -1;
        l->lists = bigger;
        l->cap = cap;
    }
    IdList *it = &l->lists[l->n];
    it->items = malloc(sizeof(int64_t) * 2);
    if (!it->items) return -1;
    it->items[0] = first;
    it->n = 1;
    it->cap = 2;
    return l->n++;
}

static int list_append(IdList *it, int64_t id) {
    if (it->n == it->cap) {
        int64_t *bigger = realloc(it->items, sizeof(int64_t) * (size_t)it->cap * 2);
        if (!bigger) return 0;
        it->items = bigger;
        it->cap *= 2;
    }
    it->items[it->n++] = id;
    return 1;
}

static void lists_free(Lists *l) {
    for (int64_t i = 0; i < l->n; i++) free(l->lists[i].items);
    free(l->lists);
}

/* ---- sorting helpers ---- */

typedef struct {
    int64_t pos, flag, number;
} Event;

static int cmp_event(const void *x, const void *y) {
    const Event *a = x, *b = y;
    if (a->pos != b->pos) return a->pos < b->pos ? -1 : 1;
    if (a->flag != b->flag) return a->flag < b->flag ? -1 : 1;
    return (a->number > b->number) - (a->number < b->number);
}

typedef struct {
    int64_t call, index;
} ByCall;

static int cmp_by_call(const void *x, const void *y) {
    const ByCall *a = x, *b = y;
    if (a->call != b->call) return a->call < b->call ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

typedef struct {
    int64_t node, frontier, placed, j;
    uint64_t above;
    int64_t s[3];
} Frame;

typedef struct {
    int status;
    int linearizable;
    int64_t steps, explored, stuck;
} Outcome;

typedef struct {
    /* inputs */
    const int64_t *table;
    int64_t n;
    int64_t initial[3];
    PyObject *check; /* called every check_every steps; None or NULL: never */
    int64_t check_every, max_steps;
    int reuse, dominance;
    /* owned allocations, freed by cleanup */
    ByCall *req, *opt;
    Event *events;
    int64_t *nxt, *prv, *position, *entry, *match, *call_node, *opt_call, *prev_twin;
    NOp *req_ops, *opt_ops;
    Frame *stack;
    int64_t stack_cap;
    Table memo;
    SetStore sets;
    Lists lists;
} Search;

static void cleanup(Search *S) {
    free(S->req);
    free(S->opt);
    free(S->events);
    free(S->nxt);
    free(S->prv);
    free(S->position);
    free(S->entry);
    free(S->match);
    free(S->call_node);
    free(S->opt_call);
    free(S->prev_twin);
    free(S->req_ops);
    free(S->opt_ops);
    free(S->stack);
    table_free(&S->memo);
    sets_free(&S->sets);
    lists_free(&S->lists);
}

/* Whether (frontier, above, state) with placed set ``placed`` is a configuration not met yet;
 * records it. -1: out of memory. */
static int fresh_configuration(Search *S, int64_t frontier, uint64_t above, const int64_t *state,
                               int64_t placed) {
    uint64_t key[6] = {(uint64_t)frontier, above, (uint64_t)state[0], (uint64_t)state[1],
                       (uint64_t)state[2], S->dominance ? 0 : (uint64_t)placed};
    int found;
    if (!S->dominance) {
        int64_t *slot = table_slot(&S->memo, key, &found);
        if (!slot) return -1;
        return !found;
    }
    int64_t *slot = table_slot(&S->memo, key, &found);
    if (!slot) return -1;
    if (!found) {
        int64_t id = lists_new(&S->lists, placed);
        if (id < 0) return -1;
        *slot = id;
        return 1;
    }
    IdList *seen = &S->lists.lists[*slot];
    int64_t from = seen->n > MEMO_PER_STATE ? seen->n - MEMO_PER_STATE : 0;
    for (int64_t i = from; i < seen->n; i++)
        if (sets_subset(&S->sets, seen->items[i], placed)) return 0;
    if (!list_append(seen, placed)) return -1;
    return 1;
}

static int push(Search *S, int64_t *depth, Frame f) {
    if (*depth == S->stack_cap) {
        int64_t cap = S->stack_cap ? S->stack_cap * 2 : 256;
        Frame *bigger = realloc(S->stack, sizeof(Frame) * (size_t)cap);
        if (!bigger) return 0;
        S->stack = bigger;
        S->stack_cap = cap;
    }
    S->stack[(*depth)++] = f;
    return 1;
}

static int run(Search *S, Outcome *out) {
    int64_t n = S->n, nreq = 0, nopt = 0;
    const int64_t *t = S->table;
    S->req = malloc(sizeof(ByCall) * (size_t)(n + 1));
    S->opt = malloc(sizeof(ByCall) * (size_t)(n + 1));
    if (!S->req || !S->opt) return -1;
    for (int64_t i = 0; i < n; i++) {
        ByCall b = {t[i * FIELDS], i};
        if (t[i * FIELDS + 1] >= 0)
            S->req[nreq++] = b;
        else
            S->opt[nopt++] = b;
    }
    out->status = RESULT_DONE;
    out->steps = 0;
    out->explored = 0;
    out->stuck = -1;
    if (nreq == 0) {
        out->linearizable = 1;
        return 0;
    }
    qsort(S->req, (size_t)nreq, sizeof(ByCall), cmp_by_call);
    qsort(S->opt, (size_t)nopt, sizeof(ByCall), cmp_by_call);
    /* The widest span of required ops linearizable ahead of the frontier must fit the bitset. */
    for (int64_t f = 0, k = 0; f < nreq; f++) {
        int64_t ret = t[S->req[f].index * FIELDS + 1];
        if (k < f) k = f;
        while (k < nreq && S->req[k].call < ret) k++;
        if (k - 1 - f > MAX_ABOVE_BIT) {
            out->status = RESULT_UNSUPPORTED;
            return 0;
        }
    }
    int64_t nev = 2 * nreq, size = nev + 1;
    S->events = malloc(sizeof(Event) * (size_t)nev);
    S->nxt = malloc(sizeof(int64_t) * (size_t)size);
    S->prv = malloc(sizeof(int64_t) * (size_t)size);
    S->position = malloc(sizeof(int64_t) * (size_t)size);
    S->entry = malloc(sizeof(int64_t) * (size_t)size);
    S->match = calloc((size_t)size, sizeof(int64_t));
    S->call_node = malloc(sizeof(int64_t) * (size_t)nreq);
    S->opt_call = malloc(sizeof(int64_t) * (size_t)(nopt + 1));
    S->prev_twin = malloc(sizeof(int64_t) * (size_t)(nopt + 1));
    S->req_ops = malloc(sizeof(NOp) * (size_t)nreq);
    S->opt_ops = malloc(sizeof(NOp) * (size_t)(nopt + 1));
    if (!S->events || !S->nxt || !S->prv || !S->position || !S->entry || !S->match ||
        !S->call_node || !S->opt_call || !S->prev_twin || !S->req_ops || !S->opt_ops)
        return -1;
    for (int64_t k = 0; k < nreq; k++) {
        const int64_t *row = t + S->req[k].index * FIELDS;
        S->events[2 * k] = (Event){row[0], 0, k};
        S->events[2 * k + 1] = (Event){row[1], 1, k};
        S->req_ops[k] = (NOp){row[2], row[3], row[4]};
    }
    qsort(S->events, (size_t)nev, sizeof(Event), cmp_event);
    for (int64_t i = 0; i < size; i++) {
        S->nxt[i] = i + 1;
        S->prv[i] = i - 1;
    }
    S->nxt[size - 1] = -1;
    S->position[0] = -1;
    S->entry[0] = 0;
    for (int64_t i = 0; i < nev; i++) {
        int64_t node = i + 1;
        Event e = S->events[i];
        S->position[node] = e.pos;
        S->entry[node] = e.flag ? -1 - e.number : e.number;
        if (e.flag)
            S->match[S->call_node[e.number]] = node;
        else
            S->call_node[e.number] = node;
    }
    /* Interchangeable optional ops: the previous one with the same signature. Placed twins are
     * always a prefix of their chain, so "an earlier twin is unplaced" is "the previous is". */
    {
        Table last;
        if (!table_init(&last, 1, 64)) {
            table_free(&last);
            return -1;
        }
        for (int64_t j = 0; j < nopt; j++) {
            const int64_t *row = t + S->opt[j].index * FIELDS;
            S->opt_call[j] = row[0];
            S->opt_ops[j] = (NOp){row[2], row[3], row[4]};
            S->prev_twin[j] = -1;
            if (row[5] >= 0) {
                uint64_t key = (uint64_t)row[5];
                int found;
                int64_t *slot = table_slot(&last, &key, &found);
                if (!slot) {
                    table_free(&last);
                    return -1;
                }
                if (found) S->prev_twin[j] = *slot;
                *slot = j;
            }
        }
        table_free(&last);
    }
    if (!table_init(&S->memo, 6, 1024) || !sets_init(&S->sets, (size_t)nopt)) return -1;
    memset(S->sets.scratch, 0, S->sets.words * sizeof(uint64_t));
    if (sets_intern(&S->sets) != 0) return -1; /* id 0: nothing placed */

    int64_t state[3] = {S->initial[0], S->initial[1], S->initial[2]};
    int64_t frontier = 0, placed = 0, remaining = nreq, steps = 0, explored = 0;
    uint64_t above = 0;
    int64_t furthest = -1, stuck = -1, depth = 0, cursor = 0;
    int64_t node = S->nxt[0];
    int64_t next_state[3];
    while (remaining) {
        steps++;
        if (steps % S->check_every == 0) {
            if (S->check && S->check != Py_None) {
                PyObject *r = PyObject_CallNoArgs(S->check);
                if (!r) return -2;
                Py_DECREF(r);
            }
            if (S->max_steps >= 0 && steps > S->max_steps) {
                out->status = RESULT_STEP_LIMIT;
                out->steps = steps;
                out->stuck = stuck;
                return 0;
            }
        }
        int64_t number = S->entry[node];
        if (number >= 0) {
            if (step(state, &S->req_ops[number], next_state)) {
                int64_t new_frontier = frontier;
                uint64_t new_above = above | (1ULL << (number - frontier));
                if (new_above & 1) {
                    int ones = __builtin_ctzll(~new_above);
                    new_above >>= ones;
                    new_frontier += ones;
                }
                int fresh = fresh_configuration(S, new_frontier, new_above, next_state, placed);
                if (fresh < 0) return -1;
                if (fresh) {
                    explored++;
                    Frame f = {node, frontier, placed, -1, above, {state[0], state[1], state[2]}};
                    if (!push(S, &depth, f)) return -1;
                    memcpy(state, next_state, sizeof state);
                    frontier = new_frontier;
                    above = new_above;
                    int64_t p = S->prv[node], q = S->nxt[node];
                    S->nxt[p] = q;
                    S->prv[q] = p;
                    int64_t r = S->match[node];
                    p = S->prv[r];
                    q = S->nxt[r];
                    S->nxt[p] = q;
                    if (q != -1) S->prv[q] = p;
                    remaining--;
                    node = S->nxt[0];
                    cursor = 0;
                    continue;
                }
            }
            node = S->nxt[node];
            continue;
        }
        int64_t limit = S->position[node];
        int64_t j = cursor;
        int advanced = 0;
        while (j < nopt && S->opt_call[j] < limit) {
            int64_t twin = S->prev_twin[j];
            if ((S->reuse || !sets_has(&S->sets, placed, j)) &&
                !(twin >= 0 && (S->reuse || !sets_has(&S->sets, placed, twin)))) {
                steps++;
                if (step(state, &S->opt_ops[j], next_state)) {
                    int64_t now = placed;
                    if (!S->reuse) {
                        now = sets_with(&S->sets, placed, j);
                        if (now < 0) return -1;
                    }
                    int fresh = fresh_configuration(S, frontier, above, next_state, now);
                    if (fresh < 0) return -1;
                    if (fresh) {
                        explored++;
                        Frame f = {node, frontier, placed, j, above, {state[0], state[1], state[2]}};
                        if (!push(S, &depth, f)) return -1;
                        memcpy(state, next_state, sizeof state);
                        placed = now;
                        node = S->nxt[0];
                        cursor = 0;
                        advanced = 1;
                        break;
                    }
                }
            }
            j++;
        }
        if (advanced) continue;
        if (node > furthest) {
            furthest = node;
            stuck = S->req[-1 - number].index;
        }
        if (depth == 0) {
            out->linearizable = 0;
            out->steps = steps;
            out->explored = explored;
            out->stuck = stuck;
            return 0;
        }
        Frame f = S->stack[--depth];
        node = f.node;
        memcpy(state, f.s, sizeof state);
        frontier = f.frontier;
        above = f.above;
        placed = f.placed;
        if (f.j >= 0) {
            cursor = f.j + 1;
            continue;
        }
        int64_t r = S->match[node];
        S->nxt[S->prv[r]] = r;
        if (S->nxt[r] != -1) S->prv[S->nxt[r]] = r;
        remaining++;
        S->nxt[S->prv[node]] = node;
        S->prv[S->nxt[node]] = node;
        node = S->nxt[node];
        cursor = 0;
    }
    out->linearizable = 1;
    out->steps = steps;
    out->explored = explored;
    return 0;
}

PyDoc_STRVAR(search_doc,
             "search(table, initial, check, check_every, max_steps, reuse_optional, dominance)\n"
             "-> (status, linearizable, steps, explored, stuck); status 0 done, 1 step limit, "
             "2 unsupported.");

static PyObject *py_search(PyObject *self, PyObject *args) {
    Py_buffer buf;
    long long s0, s1, s2, check_every, max_steps;
    int reuse, dominance;
    PyObject *check;
    if (!PyArg_ParseTuple(args, "y*(LLL)OLLpp", &buf, &s0, &s1, &s2, &check, &check_every,
                          &max_steps, &reuse, &dominance))
        return NULL;
    if (buf.len % (Py_ssize_t)(FIELDS * sizeof(int64_t)) != 0 || check_every <= 0) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "table must hold 6 int64 per op; check_every > 0");
        return NULL;
    }
    Search S;
    memset(&S, 0, sizeof S);
    S.table = buf.buf;
    S.n = (int64_t)(buf.len / (Py_ssize_t)(FIELDS * sizeof(int64_t)));
    S.initial[0] = s0;
    S.initial[1] = s1;
    S.initial[2] = s2;
    S.check = check;
    S.check_every = check_every;
    S.max_steps = max_steps;
    S.reuse = reuse;
    S.dominance = dominance;
    Outcome out;
    memset(&out, 0, sizeof out);
    int rc = run(&S, &out);
    cleanup(&S);
    PyBuffer_Release(&buf);
    if (rc == -2) return NULL; /* the check callback raised */
    if (rc == -1) return PyErr_NoMemory();
    return Py_BuildValue("(iiLLL)", out.status, out.linearizable, (long long)out.steps,
                         (long long)out.explored, (long long)out.stuck);
}

static PyMethodDef methods[] = {
    {"search", py_search, METH_VARARGS, search_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_wgl_native",
    "The compiled core of the WGL linearizability search (see bench/checker/wgl.py).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__wgl_native(void) { return PyModule_Create(&module); }
