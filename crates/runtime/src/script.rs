//! What every crate with Lua scripts shares: [`lua_script!`](crate::lua_script) joins a shared
//! prelude file and one script file into a lazily built `redis::Script` (so each script file stays
//! on its own next to its caller), and [`int_at`] / [`string_at`] / [`signed_at`] read one item
//! of a script's array reply, naming the item and what came instead when it is not what the
//! script promises.

use redis::Value;

/// `static NAME: LazyLock<Script> = lua_script!("lua/prelude.lua", "lua/name.lua");` — the two
/// files (relative to the calling file) joined with a newline, the prelude first.
#[macro_export]
macro_rules! lua_script {
    ($prelude:literal, $file:literal) => {
        ::std::sync::LazyLock::new(|| ::redis::Script::new(concat!(include_str!($prelude), "\n", include_str!($file))))
    };
}

/// Item `i` as an integer.
pub fn signed_at(reply: &[Value], i: usize) -> Result<i64, String> {
    match reply.get(i) {
        Some(Value::Int(n)) => Ok(*n),
        other => Err(format!("item {i}: expected an integer, got {other:?}")),
    }
}

/// Item `i` as a non-negative integer.
pub fn int_at(reply: &[Value], i: usize) -> Result<u64, String> {
    match reply.get(i) {
        Some(Value::Int(n)) if *n >= 0 => Ok(*n as u64),
        other => Err(format!("item {i}: expected a non-negative integer, got {other:?}")),
    }
}

/// Item `i` as a string (bulk or simple).
pub fn string_at(reply: &[Value], i: usize) -> Result<String, String> {
    match reply.get(i) {
        Some(Value::BulkString(bytes)) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        Some(Value::SimpleString(s)) => Ok(s.clone()),
        other => Err(format!("item {i}: expected a string, got {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_read_or_named() {
        let reply = vec![Value::Int(7), Value::Int(-2), Value::BulkString(b"cpu".to_vec()), Value::SimpleString("ok".into())];
        assert_eq!(int_at(&reply, 0), Ok(7));
        assert_eq!(signed_at(&reply, 1), Ok(-2));
        assert!(int_at(&reply, 1).unwrap_err().starts_with("item 1: expected a non-negative integer"));
        assert_eq!(string_at(&reply, 2).as_deref(), Ok("cpu"));
        assert_eq!(string_at(&reply, 3).as_deref(), Ok("ok"));
        assert!(string_at(&reply, 0).unwrap_err().starts_with("item 0: expected a string"));
        assert!(int_at(&reply, 9).unwrap_err().starts_with("item 9: expected a non-negative integer, got None"));
    }
}
