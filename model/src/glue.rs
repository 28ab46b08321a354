//! The calling convention of our C++ glue (`csrc/*.cpp`): each function takes a buffer for an
//! error message and returns 0, or 1 with the message written (snprintf, NUL-terminated).
//! One place reads that message, for every caller.

use std::ffi::c_char;

/// Calls a glue function with an error buffer; its message when it returns non-zero.
pub(crate) fn call(f: impl FnOnce(*mut c_char, usize) -> i32) -> Result<(), String> {
    let mut err = vec![0 as c_char; 2048];
    if f(err.as_mut_ptr(), err.len()) == 0 {
        return Ok(());
    }
    // SAFETY: the glue wrote a NUL-terminated message into the buffer (and it starts zeroed).
    Err(unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned())
}
