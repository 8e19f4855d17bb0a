;; A WebAssembly plugin that passes audio through and logs "hello" at level 2 from every block: the
;; message tests of capi/tests/c_api.rs and the Go package use it (logger.wasm is this, assembled; the Rust
;; test checks that the two agree).
(module
  (import "fxgraph" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "\00\04\00\00\00\20\00\00")
  (data (i32.const 64) "hello")
  (func (export "fxg_abi_version") (result i32) (i32.const 1))
  (func (export "fxg_set_param") (param i32 f32) (result i32) (i32.const 0))
  (func (export "fxg_initialize") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "fxg_buffers") (result i32) (i32.const 16))
  (func (export "fxg_start"))
  (func (export "fxg_process") (param $n i32) (result i32)
    (memory.copy (i32.const 8192) (i32.const 1024) (i32.const 4096))
    (call $log (i32.const 2) (i32.const 64) (i32.const 5))
    (i32.const 0))
  (func (export "fxg_stop"))
  (func (export "fxg_cleanup"))
)
