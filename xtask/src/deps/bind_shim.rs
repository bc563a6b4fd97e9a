//! Step: `libfaultline_bind.so`, the LD_PRELOAD shim that makes JVM nodes (Cassandra, Kafka)
//! source their outgoing connections from their lab address (see harness/shim/bind_source.c),
//! compiled with the machine's C compiler into the tools directory.

use std::process::Command;

use super::{Outcome, Record, sha256};
use crate::Ctx;
use crate::proc::{io_err, run_logged};

pub const SHIM: &str = "libfaultline_bind.so";
const SOURCE: &str = "harness/shim/bind_source.c";

pub fn step(ctx: &Ctx, record: &mut Record) -> Result<Outcome, String> {
    let source = ctx.root.join(SOURCE);
    let dir = ctx.tools();
    let lib = dir.join(SHIM);
    let stamp = dir.join(format!("{SHIM}.source-sha256"));
    let want = sha256(&source)?;
    let fields = |lib_sha: String| {
        [
            ("path", lib.display().to_string()),
            ("source_sha256", want.clone()),
            ("sha256", lib_sha),
        ]
    };
    if lib.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        record.add("bind-shim", &fields(sha256(&lib)?));
        return Ok(Outcome::AlreadyInstalled(lib.display().to_string()));
    }
    std::fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, e))?;
    let tmp = dir.join(format!(".{SHIM}.tmp"));
    let mut cc = Command::new("cc");
    cc.args(["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-o"])
        .arg(&tmp)
        .arg(&source)
        .arg("-ldl");
    run_logged(&mut cc, &ctx.log("bind-shim-cc"))
        .map_err(|e| format!("{e} (hint: a C compiler `cc` is needed, e.g. Debian's gcc)"))?;
    std::fs::rename(&tmp, &lib).map_err(|e| io_err("move into place", &lib, e))?;
    std::fs::write(&stamp, &want).map_err(|e| io_err("write", &stamp, e))?;
    record.add("bind-shim", &fields(sha256(&lib)?));
    Ok(Outcome::Installed(lib.display().to_string()))
}
