//! A fault-injecting TCP proxy for the emulator tests: put between a
//! function and moto, it passes bytes through, delays them, swallows them
//! (a black hole: the connection stays open and nothing comes back), or
//! resets connections, as the test switches it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Bytes flow as they come.
    None,
    /// Every chunk, either way, waits this long first.
    Delay(Duration),
    /// Accepted, read and dropped: nothing is ever answered.
    BlackHole,
    /// New and open connections are reset (RST) at their next byte.
    Reset,
}

struct Shared {
    mode: AtomicU8,
    delay_ms: AtomicU64,
    /// Connections accepted.
    accepted: AtomicU64,
}

/// The proxy, listening on `port`, forwarding to `upstream`.
pub struct FaultProxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    pub fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(0),
            delay_ms: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                s.accepted.fetch_add(1, Ordering::Relaxed);
                let s = s.clone();
                std::thread::spawn(move || {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        return;
                    };
                    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    let s_up = s.clone();
                    std::thread::spawn(move || pump(c2, s2, &s_up));
                    pump(server, client, &s);
                });
            }
        });
        FaultProxy { port, shared }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, fault: Fault) {
        let (mode, ms) = match fault {
            Fault::None => (0, 0),
            Fault::Delay(d) => (1, d.as_millis() as u64),
            Fault::BlackHole => (2, 0),
            Fault::Reset => (3, 0),
        };
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
        self.shared.mode.store(mode, Ordering::SeqCst);
    }

    /// Connections accepted so far (to see that a client went through it).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }
}

fn reset(s: &TcpStream) {
    // SO_LINGER 0: closing sends RST instead of FIN.
    let _ = socket2_linger_zero(s);
    let _ = s.shutdown(Shutdown::Both);
}

#[cfg(unix)]
fn socket2_linger_zero(s: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }
    let l = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, val: *const Linger, len: u32) -> i32;
    }
    // SOL_SOCKET = 1, SO_LINGER = 13 on Linux.
    let rc = unsafe {
        setsockopt(
            s.as_raw_fd(),
            1,
            13,
            &l,
            std::mem::size_of::<Linger>() as u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Copies `from` to `to`, applying the fault to each chunk.
fn pump(mut from: TcpStream, mut to: TcpStream, s: &Shared) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        match s.mode.load(Ordering::SeqCst) {
            1 => std::thread::sleep(Duration::from_millis(s.delay_ms.load(Ordering::SeqCst))),
            2 => continue,
            3 => {
                reset(&from);
                reset(&to);
                return;
            }
            _ => {}
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}
