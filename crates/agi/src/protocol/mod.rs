//! The FastAGI wire protocol as Asterisk speaks it (`res/res_agi.c`), with every input
//! treated as hostile. Sync parsers that take bytes ([`env`](mod@env), [`script`],
//! [`command`]) and the async readers that feed them from a socket with limits and timeouts
//! ([`io`]).
//!
//! A conversation, Asterisk's side first:
//!
//! ```text
//! -> agi_network: yes
//! -> agi_network_script: authorize?extension=1001&number=%2B442071234567
//! -> agi_request: agi://127.0.0.1:4573/authorize?extension=1001&number=%2B442071234567
//! -> agi_channel: PJSIP/1001-0000002a
//! -> ...                                  (about twenty agi_* lines, then agi_arg_N)
//! ->                                      (an empty line ends the block)
//! <- SET VARIABLE TOLLGATE_MAX_SECONDS "3600"
//! -> 200 result=1
//! <- ...
//! <- (the script closes the connection: Asterisk goes on with the dialplan)
//! ```
//!
//! Asterisk reads a command with `fgets` into a 2048-byte buffer (`AGI_BUF_LEN`): a longer
//! line would be cut and its tail run as a second command, so every command built here is
//! kept below [`command::MAX_COMMAND_BYTES`]. It splits a command into words like a shell
//! (`parse_args`): double quotes group, a backslash makes the next byte literal; a CR is kept
//! as data and an LF ends the command, so both are removed from every value ([`command::quote`]).

pub mod command;
pub mod env;
pub mod io;
pub mod script;

pub use command::{quote, sanitize, Command, Reply};
pub use env::{AgiEnvironment, EnvParser};
pub use script::{split_network_script, Params, Script};
