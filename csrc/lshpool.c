/* lshpool.c: M.shpool(b [, {block=, count=}]), a pool of fixed-size slots laid out inside the
 * memory of a buffer b (csrc/alloc/shpool.c), so that every process that sees the same memory (a
 * MAP_SHARED mapping across fork, a System V segment, a POSIX shared memory object, a mapped
 * file) allocates from it together. The handle keeps only the pool's geometry and anchors b; the
 * free stack and the slots' states live in the memory. A slot is handed out as a view of b, and
 * dies (that view) when given back. Every access to the memory runs under the fault guard (when
 * b's memory is page-backed), and the memory is found again through b at each call, so a b that
 * was freed, unmapped, remapped or shrunk is noticed, never written through. */
#include <errno.h>
#include <string.h>

#include "lalloc.h"
#include "shpool.h"

#define SHPOOL_T "memlab.shpool"

static const char shpool_key = 'S';

typedef struct ShPool {
  shp_info in;
  int live;        /* 0 once destroyed */
  Site made_at, destroyed_at;
} ShPool;

/* One call of the C pool, run under the guard: nothing here may call Lua. */
typedef enum OpKind {
  OP_FORMAT, OP_ATTACH, OP_ALLOC, OP_FREE, OP_SAME, OP_STATE, OP_STATS, OP_CHECK
} OpKind;

typedef struct Op {
  OpKind kind;
  unsigned char *mem;
  size_t len, block, count, off, idx;
  shp_info in;
  shp_stats st;
  ml_status status;
  int state; /* OP_STATE: the slot's state byte (shp_state) */
  char why[200];
} Op;

static void op_run(void *arg) {
  Op *op = (Op *)arg;
  switch (op->kind) {
  case OP_FORMAT: op->status = shp_format(op->mem, op->len, op->block, op->count, &op->in); break;
  case OP_ATTACH: op->status = shp_attach(op->mem, op->len, &op->in, op->why, sizeof op->why); break;
  case OP_ALLOC: op->status = shp_alloc(op->mem, &op->in, &op->off, op->why, sizeof op->why); break;
  case OP_FREE: op->status = shp_free(op->mem, &op->in, op->off, op->why, sizeof op->why); break;
  /* a handle of a pool formatted again reads nothing of the new one (its geometry is not this) */
  case OP_SAME: op->status = shp_same(op->mem, &op->in, op->why, sizeof op->why); break;
  case OP_STATE:
    if ((op->status = shp_same(op->mem, &op->in, op->why, sizeof op->why)) == ML_OK)
      op->state = shp_state(op->mem, &op->in, op->idx);
    break;
  case OP_STATS:
    if ((op->status = shp_same(op->mem, &op->in, op->why, sizeof op->why)) == ML_OK)
      shp_stats_get(op->mem, &op->in, &op->st);
    break;
  case OP_CHECK: op->status = shp_check(op->mem, &op->in, NULL, op->why, sizeof op->why); break;
  }
}

static ShPool *toshpool(lua_State *L, int idx) {
  ShPool *p = (ShPool *)udata_test(L, idx, lua_upvalueindex(2), &shpool_key);
  if (!p) {
    if (idx == 1) arg_self_slip(L, &shpool_key, "__index", SHPOOL_T); /* sp.alloc()? */
    luaL_typeerror(L, idx, SHPOOL_T);
  }
  return p;
}

/* The live pool at idx; raises on a destroyed one. */
static ShPool *checkpool(lua_State *L, int idx) {
  ShPool *p = toshpool(L, idx);
  if (!p->live)
    luaL_error(L, "attempt to use a destroyed shared pool (destroyed at %s)", p->destroyed_at.where);
  return p;
}

/* The memory of pool p (its buffer is uservalue 1; *pb): its first byte, checked to still hold
 * the whole pool. Raises when the buffer died or shrank. Take it after the call's allocations. */
static unsigned char *pool_mem(lua_State *L, int pidx, ShPool *p, Buffer **pb) {
  lua_getiuservalue(L, pidx, 1);
  Buffer *b = (Buffer *)lua_touserdata(L, -1);
  lua_pop(L, 1); /* anchored by the pool */
  size_t len;
  unsigned char *mem = buf_window(L, b, &len);
  if (len < p->in.size)
    luaL_error(L, "the memory under the shared pool shrank (%I bytes, the pool spans %I)",
               (lua_Integer)len, (lua_Integer)p->in.size);
  *pb = b;
  return mem;
}

/* Raises unless memlab's records let the pool's bookkeeping (its header, links and states: all
 * that alloc and free write) be written: a protection taking writing away is refused before the
 * call changes anything, where a fault half-way would leave a slot on no list. */
static void writable_meta(lua_State *L, const Buffer *b, const unsigned char *mem, const ShPool *p) {
  mem_check_write(L, b->o, owner_off(b->o, mem), p->in.slots);
}

/* Runs op over the pool's memory (the buffer b's Owner), under the guard. */
static void run(lua_State *L, const Buffer *b, Op *op, size_t n) {
  mem_access(L, b->o, op_run, op, op->mem, n);
}

/* One call of the C pool over its memory mem (pool_mem's, with mb its buffer): op->off and op->idx
 * as the caller set them (kinds that write check first that the bookkeeping is writable). */
static void pool_run(lua_State *L, const ShPool *p, const Buffer *mb, unsigned char *mem, OpKind kind,
                     Op *op) {
  op->kind = kind;
  op->mem = mem;
  op->in = p->in;
  if (kind == OP_ALLOC || kind == OP_FREE) writable_meta(L, mb, mem, p);
  run(L, mb, op, p->in.size);
}

static int corrupt(lua_State *L, const char *why) {
  return luaL_error(L, "shpool: the pool's memory is corrupt (%s)", why);
}

/* Raises unless the header is still this handle's pool (not formatted again, nor written over):
 * what reads the memory with the handle's geometry asks first. */
static void pool_same(lua_State *L, const ShPool *p, const Buffer *mb, unsigned char *mem) {
  Op op = {0};
  pool_run(L, p, mb, mem, OP_SAME, &op);
  if (op.status != ML_OK) corrupt(L, op.why);
}

/* The bytes count slots of block bytes span (shp_size_for); raises at idx when no Lua integer
 * holds that (past 2^63: nothing could be that large). */
static size_t pool_span(lua_State *L, int idx, size_t block, size_t count) {
  size_t n = shp_size_for(block, count);
  if (n == 0 || n > (size_t)LUA_MAXINTEGER) /* 0: past 2^64 */
    luaL_argerror(L, idx, lua_pushfstring(L, "count out of range (%I slots of %I bytes need more "
                                             "than 2^63 bytes)", (lua_Integer)count,
                                          (lua_Integer)block));
  return n;
}

/* M.shpool(b, {block = n [, count = k]}) formats b's memory as a new pool; M.shpool(b) attaches
 * to the pool b's memory holds (nil, message, EINVAL when it holds none). */
static int shpool_new(lua_State *L) {
  Buffer *b = buf_check(L, 1);
  int format = !lua_isnoneornil(L, 2);
  size_t block = 0, count = 0;
  if (format) { /* read as the allocators read theirs (allocopt.c) */
    static const char *const known[] = {"block", "count", NULL};
    opts_check(L, 2, known);
    block = opts_need(L, 2, "block", "the size of a slot in bytes");
    if (block < 1 || block > SHP_MAX_BLOCK)
      arg_range_error(L, 2, "block", (lua_Integer)block, "1 to 4 GiB");
    count = opts_size(L, 2, "count", SIZE_MAX); /* no Lua integer is SIZE_MAX: absent */
    if (count == SIZE_MAX)
      count = 0;
    else if (count < 1 || count > SHP_MAX_COUNT)
      arg_range_error(L, 2, "count", (lua_Integer)count, "1 to 2^32 - 2; leave it out for as many as fit");
  } else if (lua_gettop(L) > 2) {
    luaL_argerror(L, 3, "no argument expected (M.shpool(b [, options]))");
  }
  ShPool *p = (ShPool *)lua_newuserdatauv(L, sizeof(ShPool), 1);
  memset(p, 0, sizeof *p);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &shpool_key);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  site_capture(L, &p->made_at);
  size_t len;
  unsigned char *mem = buf_window(L, b, &len); /* after the allocations */
  if ((uintptr_t)mem % ML_ALIGN)
    luaL_argerror(L, 1, lua_pushfstring(L, "the memory must start on a 16-byte boundary (it starts "
                                           "at %s)", addr_text((uintptr_t)mem).s));
  Op op;
  memset(&op, 0, sizeof op);
  op.mem = mem;
  op.len = len;
  if (format) {
    size_t n = count ? count : shp_count_for(block, len); /* 0: not even one slot fits */
    size_t need = pool_span(L, 2, block, n ? n : 1);
    if (n == 0 || need > len)
      luaL_argerror(L, 1, lua_pushfstring(L, "too small for %s%I %s of %I bytes (%I bytes "
                                             "needed with the pool's header, the buffer has %I)",
                                          count ? "" : "even ", (lua_Integer)(count ? count : 1),
                                          count == 1 || !count ? "slot" : "slots", (lua_Integer)block,
                                          (lua_Integer)need, (lua_Integer)len));
    /* refused before anything is written, as alloc and free are, where memlab's records say so */
    mem_check_write(L, b->o, owner_off(b->o, mem), need);
    op.kind = OP_FORMAT;
    op.block = block;
    op.count = n;
    run(L, b, &op, len);
    if (op.status != ML_OK) /* not reached: the checks above are the C pool's */
      return luaL_error(L, "shpool: %s", ml_strstatus(op.status));
  } else {
    op.kind = OP_ATTACH;
    run(L, b, &op, len < SHP_HEADER ? len : SHP_HEADER);
    if (op.status != ML_OK) {
      lua_pushnil(L);
      lua_pushfstring(L, "shpool: %s", op.why);
      lua_pushinteger(L, EINVAL);
      return 3;
    }
  }
  p->in = op.in;
  p->live = 1;
  return 1;
}

/* The slot offset (from the pool's memory) of x: a view of the pool's buffer's root, or an
 * integer offset from the pool's memory. */
static size_t slot_offset(lua_State *L, int idx, const Buffer *mb, Buffer **pv) {
  *pv = NULL;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer o = luaL_checkinteger(L, idx);
    if (o < 0) arg_range_error(L, idx, "offset", o, "0 or more");
    return (size_t)o;
  }
  Buffer *v = buf_test(L, idx);
  if (!v) return (size_t)arg_typeerror(L, idx, "memlab.buffer or offset");
  if (v->o != mb->o || v->off < mb->off)
    luaL_argerror(L, idx, "not a slot of this pool (a buffer over other memory, or over the same "
                          "memory mapped at another address: pass the slot's offset)");
  size_t vlen;
  buf_window(L, v, &vlen); /* a dead view (a slot given back already) says so */
  *pv = v;
  return v->off - mb->off;
}

/* Raises at idx for an offset shp_index or shp_free refused. */
static int status_error(lua_State *L, int idx, const ShPool *p, ml_status s, size_t off) {
  lua_Integer o = (lua_Integer)off, i = (lua_Integer)((off - p->in.slots) / p->in.stride);
  if (s == ML_EFOREIGN)
    return luaL_argerror(L, idx, lua_pushfstring(L, "not a slot of this pool (offset %I is %s; "
                                                 "the slots span %I to %I)", o,
                                                 off < p->in.slots ? "in its header" : "past its end",
                                                 (lua_Integer)p->in.slots, (lua_Integer)p->in.size));
  if (s == ML_EINTERIOR)
    return luaL_argerror(L, idx, lua_pushfstring(L, "not a slot's start (offset %I is inside slot "
                                                 "%I, which starts at %I)", o, i,
                                                 (lua_Integer)(p->in.slots + (size_t)i * p->in.stride)));
  if (s == ML_EDOUBLE) /* a misuse of the slot, not of the argument: as b:free() says it */
    return luaL_error(L, "double free (slot %I at offset %I is free already)", i, o);
  return luaL_argerror(L, idx, lua_pushfstring(L, "%s (offset %I)", ml_strstatus(s), o));
}

/* The view sp:alloc and sp:at hand out, made empty (aimed once the slot is known), with its size
 * from the argument at nidx (default: the block) in *n, and the pool's memory, found after the
 * view's allocation (which may run finalizers). */
static Buffer *slot_view(lua_State *L, ShPool *p, int nidx, size_t *n, Buffer **mb,
                         unsigned char **mem) {
  lua_Integer want = luaL_optinteger(L, nidx, (lua_Integer)p->in.block);
  if (want < 0 || (uint64_t)want > p->in.block)
    arg_range_error(L, nidx, "size", want,
                    lua_pushfstring(L, "0 to the block, %I", (lua_Integer)p->in.block));
  *n = (size_t)want;
  lua_getiuservalue(L, 1, 1);
  Buffer *v = buf_newview(L, -1);
  *mem = pool_mem(L, 1, p, mb);
  return v;
}

/* sp:alloc([n]) -> a view of a free slot's first n bytes (default: the block), now used; or nil,
 * "shpool: out of memory (...)", ENOMEM when the free stack is empty. */
static int sp_alloc(lua_State *L) {
  ShPool *p = checkpool(L, 1);
  size_t n;
  Buffer *mb;
  unsigned char *mem;
  Buffer *v = slot_view(L, p, 2, &n, &mb, &mem);
  Op op = {0};
  pool_run(L, p, mb, mem, OP_ALLOC, &op);
  if (op.status == ML_ENOMEM) {
    Op st = {0};
    pool_run(L, p, mb, mem, OP_STATS, &st);
    lua_pushnil(L);
    if (st.status != ML_OK || st.st.used >= p->in.count)
      lua_pushliteral(L, "shpool: out of memory (every slot is used)");
    else /* slots on no list: lost by a process killed inside a call, or being freed now */
      lua_pushfstring(L, "shpool: out of memory (no free slot: %I of %I used, the other %I on no "
                         "list: see sp:stats().lost)", (lua_Integer)st.st.used,
                      (lua_Integer)p->in.count, (lua_Integer)(p->in.count - st.st.used));
    lua_pushinteger(L, ENOMEM);
    return 3;
  }
  if (op.status != ML_OK) return corrupt(L, op.why);
  buf_aim(v, mb, op.off, n);
  return 1;
}

/* sp:free(v | offset): gives the slot back; v (a view of it) dies. Raises for a slot of no pool,
 * an interior offset, a double free. */
static int sp_free(lua_State *L) {
  ShPool *p = checkpool(L, 1);
  Buffer *mb;
  unsigned char *mem = pool_mem(L, 1, p, &mb);
  Buffer *v;
  size_t off = slot_offset(L, 2, mb, &v);
  Op op = {0};
  op.off = off;
  pool_run(L, p, mb, mem, OP_FREE, &op);
  if (op.status == ML_ECORRUPT) return corrupt(L, op.why);
  if (op.status != ML_OK) return status_error(L, 2, p, op.status, off);
  if (v) {
    v->gen = v->o->gen - 1; /* a past generation: dead for good */
    v->slotfreed = 1;
  }
  lua_pushboolean(L, 1); /* as every release (b:free) */
  return 1;
}

/* The offset of the offset or view at idx, raising for one that is no slot's start. */
static size_t slot_start(lua_State *L, int idx, ShPool *p, const Buffer *mb) {
  Buffer *v;
  size_t off = slot_offset(L, idx, mb, &v), i;
  ml_status s = shp_index(&p->in, off, &i);
  if (s != ML_OK) status_error(L, idx, p, s, off);
  return off;
}

/* sp:offset(v) -> the offset of slot v in the pool's memory (what another process passes to
 * sp:at). */
static int sp_offset(lua_State *L) {
  ShPool *p = checkpool(L, 1);
  Buffer *mb;
  unsigned char *mem = pool_mem(L, 1, p, &mb);
  luaL_checkany(L, 2);
  if (lua_type(L, 2) == LUA_TNUMBER) arg_typeerror(L, 2, "memlab.buffer");
  pool_same(L, p, mb, mem);
  lua_pushinteger(L, (lua_Integer)slot_start(L, 2, p, mb));
  return 1;
}

/* sp:at(offset [, n]) -> a view of the used slot at offset (one another process allocated) */
static int sp_at(lua_State *L) {
  ShPool *p = checkpool(L, 1);
  luaL_checkinteger(L, 2);
  size_t n;
  Buffer *mb;
  unsigned char *mem;
  Buffer *v = slot_view(L, p, 3, &n, &mb, &mem);
  Op op = {0};
  Buffer *given;
  op.off = slot_offset(L, 2, mb, &given);
  ml_status at = shp_index(&p->in, op.off, &op.idx);
  if (at != ML_OK) op.idx = SIZE_MAX; /* OP_STATE then reads the header only */
  pool_run(L, p, mb, mem, OP_STATE, &op);
  /* a pool formatted again first: its offsets are not this handle's to judge */
  if (op.status != ML_OK) return corrupt(L, op.why);
  if (at != ML_OK) return status_error(L, 2, p, at, op.off);
  if (op.state == 0)
    luaL_argerror(L, 2, lua_pushfstring(L, "slot %I at offset %I is free (allocate it first)",
                                        (lua_Integer)op.idx, (lua_Integer)op.off));
  if (op.state != 1)
    luaL_argerror(L, 2, lua_pushfstring(L, "slot %I at offset %I is corrupt: its state byte is %d "
                                        "(0 free, 1 used)",
                                        (lua_Integer)op.idx, (lua_Integer)op.off, op.state));
  buf_aim(v, mb, op.off, n);
  return 1;
}

#define SETI(k, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, k))

/* sp:stats() -> block, stride, count, size (bytes the pool spans), slots (offset of slot 0),
 * used, free, lost, allocs, frees (the last two: every process's) */
static int sp_stats(lua_State *L) {
  ShPool *p = checkpool(L, 1);
  lua_createtable(L, 0, 10);
  Buffer *mb;
  unsigned char *mem = pool_mem(L, 1, p, &mb);
  Op op = {0};
  pool_run(L, p, mb, mem, OP_STATS, &op);
  if (op.status != ML_OK) return corrupt(L, op.why);
  SETI("block", p->in.block);
  SETI("stride", p->in.stride);
  SETI("count", p->in.count);
  SETI("size", p->in.size);
  SETI("slots", p->in.slots);
  SETI("used", op.st.used);
  SETI("free", op.st.free);
  SETI("lost", op.st.lost);
  SETI("allocs", op.st.allocs);
  SETI("frees", op.st.frees);
  return 1;
}

/* sp:check() -> true, or false and what is broken */
static int sp_check(lua_State *L) {
  ShPool *p = checkpool(L, 1);
  Buffer *mb;
  unsigned char *mem = pool_mem(L, 1, p, &mb);
  Op op = {0};
  pool_run(L, p, mb, mem, OP_CHECK, &op);
  lua_pushboolean(L, op.status == ML_OK);
  if (op.status == ML_OK) return 1;
  lua_pushstring(L, op.why);
  return 2;
}

/* The iterator of sp:blocks(): offset, size, "used", "free" or "corrupt" (a state byte neither 0
 * nor 1: sp:check() says which), address, one slot per call, read under the guard then (the
 * states may change between calls: another process allocates). */
static int blocks_iter(lua_State *L) {
  ShPool *p = checkpool(L, lua_upvalueindex(3));
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(4));
  if ((uint64_t)i >= p->in.count) return 0;
  lua_pushinteger(L, i + 1);
  lua_replace(L, lua_upvalueindex(4));
  Buffer *mb;
  unsigned char *mem = pool_mem(L, lua_upvalueindex(3), p, &mb);
  Op op = {0};
  op.idx = (size_t)i;
  pool_run(L, p, mb, mem, OP_STATE, &op);
  if (op.status != ML_OK) return corrupt(L, op.why);
  size_t off = p->in.slots + (size_t)i * p->in.stride;
  lua_pushinteger(L, (lua_Integer)off);
  lua_pushinteger(L, (lua_Integer)p->in.stride);
  lua_pushstring(L, op.state == 0 ? "free" : op.state == 1 ? "used" : "corrupt");
  push_address(L, op.mem + off);
  return 4;
}

static int sp_blocks(lua_State *L) {
  ShPool *p = checkpool(L, 1);
  Buffer *mb;
  pool_mem(L, 1, p, &mb); /* raises now when the memory is gone, as the other methods */
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushvalue(L, 1);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, blocks_iter, 4);
  return 1;
}

/* sp:memory() -> the buffer the pool lives in */
static int sp_memory(lua_State *L) {
  checkpool(L, 1);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

/* sp:destroy() (and __close): this handle lets go of its buffer; the pool in the memory stays,
 * for the other processes (format the memory again, or free it, to end it). */
static int sp_destroy(lua_State *L) {
  ShPool *p = toshpool(L, 1);
  if (!p->live) return 0;
  p->live = 0;
  site_capture(L, &p->destroyed_at);
  lua_pushnil(L);
  lua_setiuservalue(L, 1, 1);
  return 0;
}

static int sp_tostring(lua_State *L) {
  ShPool *p = toshpool(L, 1);
  if (!p->live) {
    lua_pushfstring(L, SHPOOL_T ": destroyed at %s", p->destroyed_at.where);
    return 1;
  }
  lua_getiuservalue(L, 1, 1);
  const Buffer *b = (const Buffer *)lua_touserdata(L, -1);
  lua_pushfstring(L, SHPOOL_T ": %I %s of %I bytes in %I bytes of a %s buffer at %s (made at %s)",
                  (lua_Integer)p->in.count, p->in.count == 1 ? "slot" : "slots",
                  (lua_Integer)p->in.block, (lua_Integer)p->in.size,
                  b->o->kind->name, addr_text((uintptr_t)(b->o->base + b->off)).s, p->made_at.where);
  return 1;
}

static const luaL_Reg sp_methods[] = {
  {"alloc", sp_alloc}, {"free", sp_free}, {"offset", sp_offset}, {"at", sp_at},
  {"stats", sp_stats}, {"check", sp_check}, {"blocks", sp_blocks}, {"memory", sp_memory},
  {"destroy", sp_destroy}, {NULL, NULL}};

static const luaL_Reg sp_meta[] = {
  {"__tostring", sp_tostring}, {"__close", sp_destroy}, {NULL, NULL}};

/* M.shpool_size(block, count) -> the bytes a pool of count slots of block bytes spans, header
 * and bookkeeping included: the memory M.shpool(b, {block =, count =}) needs. */
static int shpool_size(lua_State *L) {
  lua_Integer block = luaL_checkinteger(L, 1), count = luaL_checkinteger(L, 2);
  if (block < 1 || (uint64_t)block > SHP_MAX_BLOCK) arg_range_error(L, 1, "block", block, "1 to 4 GiB");
  if (count < 1 || (uint64_t)count > SHP_MAX_COUNT) arg_range_error(L, 2, "count", count, "1 to 2^32 - 2");
  lua_pushinteger(L, (lua_Integer)pool_span(L, 2, (size_t)block, (size_t)count));
  return 1;
}

static const luaL_Reg sp_funcs[] = {
  {"shpool", shpool_new}, {"shpool_size", shpool_size}, {NULL, NULL}};

int lshpool_open(lua_State *L) {
  if (meta_open(L, SHPOOL_T)) {
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &shpool_key);
    luaL_getmetatable(L, BUFFER_T);
    lua_pushvalue(L, -2);
    luaL_setfuncs(L, sp_meta, 2); /* upvalues: the buffer metatable, the shpool metatable */
    lua_newtable(L);
    luaL_getmetatable(L, BUFFER_T);
    lua_pushvalue(L, -3);
    luaL_setfuncs(L, sp_methods, 2);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, SHPOOL_T);
    lua_setfield(L, -2, "__metatable");
    meta_register(L, SHPOOL_T);
  }
  lua_pop(L, 1);
  set_funcs(L, sp_funcs);
  return 0;
}
