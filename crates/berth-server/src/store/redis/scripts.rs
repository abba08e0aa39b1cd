//! The Lua scripts behind every write that touches more than one key or must check the lease.
//!
//! Why scripts: Redis runs a script alone, start to finish, so a check and the writes it
//! guards (the fencing epoch, an id's absence, every row of a batch existing) cannot be
//! interleaved with another instance's writes. MULTI/EXEC cannot branch on what it reads, and
//! WATCH would turn every contended write into a retry loop. Scripts build the index keys
//! they derive from stored rows (a session's old owner and state), so they need a single
//! Redis node, not Redis Cluster. Every key starts with `berth:`, as in `keys.rs`.

/// Every fenced script starts with this: `ARGV[1]` is the writer's fencing epoch (`0`:
/// unchecked), `KEYS[1]` the lease. A stale or missing lease answers `FENCED`, writing nothing.
macro_rules! fenced {
    ($body:literal) => {
        concat!(
            "if ARGV[1] ~= '0' and redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then\n",
            "  return 'FENCED'\n",
            "end\n",
            $body
        )
    };
}

/// KEYS: lease, session. ARGV: epoch, id, owner, state, created_at (ms), then the row's
/// field/value pairs.
pub const INSERT_SESSION: &str = fenced!(
    r#"
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 'CONFLICT'
end
redis.call('HSET', KEYS[2], unpack(ARGV, 6))
redis.call('ZADD', 'berth:sessions', ARGV[5], ARGV[2])
redis.call('SADD', 'berth:user:' .. ARGV[3] .. ':sessions', ARGV[2])
redis.call('SADD', 'berth:state:' .. ARGV[4], ARGV[2])
return 'OK'
"#
);

/// KEYS: lease. ARGV: epoch, then for each row: id, owner, state, created_at (ms), the number
/// of field/value arguments that follow, and those. Checks every row exists before changing
/// any, so a batch is all or none.
pub const UPDATE_SESSIONS: &str = fenced!(
    r#"
local rows = {}
local i = 2
while i <= #ARGV do
  local count = tonumber(ARGV[i + 4])
  local row = { id = ARGV[i], owner = ARGV[i + 1], state = ARGV[i + 2],
                created = ARGV[i + 3], first = i + 5, last = i + 4 + count }
  if redis.call('EXISTS', 'berth:session:' .. row.id) == 0 then
    return 'NOTFOUND:' .. row.id
  end
  table.insert(rows, row)
  i = row.last + 1
end
for _, row in ipairs(rows) do
  local key = 'berth:session:' .. row.id
  local old = redis.call('HMGET', key, 'owner', 'state')
  redis.call('SREM', 'berth:user:' .. old[1] .. ':sessions', row.id)
  redis.call('SREM', 'berth:state:' .. old[2], row.id)
  redis.call('DEL', key)
  redis.call('HSET', key, unpack(ARGV, row.first, row.last))
  redis.call('ZADD', 'berth:sessions', row.created, row.id)
  redis.call('SADD', 'berth:user:' .. row.owner .. ':sessions', row.id)
  redis.call('SADD', 'berth:state:' .. row.state, row.id)
end
return 'OK'
"#
);

/// KEYS: the session's timeline, the timelines by their newest entry. ARGV: the event (JSON),
/// the session, its time (ms), the limit. Not fenced: an entry is a fact any instance saw. A
/// late entry with an older time leaves the timeline's newest time as it was.
pub const ADD_EVENT: &str = r#"
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[4]), -1)
local newest = redis.call('ZSCORE', KEYS[2], ARGV[2])
if not newest or tonumber(newest) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
end
return 'OK'
"#;

/// KEYS: lease, snapshot, every snapshot's index, its session's index. ARGV: epoch, id,
/// created_at (ms), then the row's field/value pairs.
pub const INSERT_SNAPSHOT: &str = fenced!(
    r#"
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 'CONFLICT'
end
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
return 'OK'
"#
);

/// KEYS: lease, snapshot, every snapshot's index. ARGV: epoch, id.
pub const DELETE_SNAPSHOT: &str = fenced!(
    r#"
local session = redis.call('HGET', KEYS[2], 'session_id')
if session then
  redis.call('ZREM', 'berth:session:' .. session .. ':snapshots', ARGV[2])
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return 'OK'
"#
);

/// KEYS: users, names, token hashes. ARGV: id, name, token hash, the user (JSON). Not fenced:
/// any instance may add a user.
pub const INSERT_USER: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 'CONFLICT:id'
end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[1]) == 0 then
  return 'CONFLICT:name'
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[1])
return 'OK'
"#;

/// KEYS: users, users by name. ARGV: name, role (`''`: unchanged), disabled (`''`, `'1'`,
/// `'0'`). Answers the user's JSON as changed, in one step, so a concurrent change of the same
/// user cannot be lost between the read and the write.
pub const UPDATE_USER: &str = r#"
local id = redis.call('HGET', KEYS[2], ARGV[1])
if not id then
  return 'MISSING'
end
local user = cjson.decode(redis.call('HGET', KEYS[1], id))
if ARGV[2] ~= '' then
  user.role = ARGV[2]
end
if ARGV[3] ~= '' then
  user.disabled = ARGV[3] == '1'
end
local json = cjson.encode(user)
redis.call('HSET', KEYS[1], id, json)
return json
"#;

/// KEYS: users, users by name, users by token. ARGV: name. 1 when the user was there.
pub const DELETE_USER: &str = r#"
local id = redis.call('HGET', KEYS[2], ARGV[1])
if not id then
  return 0
end
local user = cjson.decode(redis.call('HGET', KEYS[1], id))
redis.call('HDEL', KEYS[3], user.token_hash)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], id)
return 1
"#;

/// KEYS: lease, epoch counter. ARGV: holder, address, ttl (ms). Answers the lease as it
/// stands afterwards: holder, address, epoch.
pub const CLAIM_LEASE: &str = r#"
local held = redis.call('HMGET', KEYS[1], 'holder', 'address', 'epoch')
if held[1] then
  if held[1] == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  end
  return held
end
-- `TIME` before a write needs effects replication: Redis 5 and later replicate so anyway.
redis.replicate_commands()
-- The counter outlives every lease, so each change of hands takes a larger epoch. A flushed
-- store starts the counter again: the clock (in microseconds) keeps every epoch above those
-- handed out before, or an old leader's fenced writes would pass under the new one's epoch.
local epoch = redis.call('INCR', KEYS[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
if epoch < now then
  epoch = now
end
-- As digits: Lua would print a number this large with an exponent.
local digits = string.format('%d', epoch)
redis.call('SET', KEYS[2], digits)
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'address', ARGV[2], 'epoch', digits)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return { ARGV[1], ARGV[2], digits }
"#;

/// KEYS: lease. ARGV: epoch.
pub const RELEASE_LEASE: &str = r#"
if redis.call('HGET', KEYS[1], 'epoch') == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 'OK'
"#;

/// KEYS: a callback state hash. ARGV: key, entry, most keys. Writes unless the key is new and
/// the hash is full; answers 1 when it wrote.
/// Deletes a state key while its entry (`{"value":...,"at":...}`) holds ARGV[2] as its value.
pub const DELETE_STATE_IF: &str = r#"
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if entry and cjson.decode(entry).value == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"#;

pub const PUT_STATE: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 or redis.call('HLEN', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"#;
