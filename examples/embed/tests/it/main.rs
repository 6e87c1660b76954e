//! Integration tests of the embedding example: the program's logic, end to end, in process.

mod conversation;
