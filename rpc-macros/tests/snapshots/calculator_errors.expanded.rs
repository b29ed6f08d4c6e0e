pub trait Calculator {
    async fn log(&self, line: &str) -> bool;
    fn add(&mut self, _: (i64, i64)) -> i64;
}
::core::compile_error! {
    "arguments cross the wire by value: use an owned type (`String` for `&str`, `Vec<u8>` for `&[u8]`)"
}
::core::compile_error! {
    "`#[rpc(oneway)]` methods cannot return a value: nobody waits for a reply"
}
::core::compile_error! {
    "remote methods must be `async fn`: every call waits on the network"
}
::core::compile_error! {
    "remote methods take `&self`, not `&mut self`: a server runs calls concurrently; keep state behind a lock or atomics"
}
::core::compile_error! {
    "arguments must be plain names: each one becomes a field of `CalculatorAddArgs`"
}
