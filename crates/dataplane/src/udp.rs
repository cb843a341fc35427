//! UDP sockets for IKE (500) and NAT-T (4500), IPv4 and IPv6, with batched
//! I/O: `sendmmsg` with UDP GSO (`UDP_SEGMENT`, runs of equal-size ESP
//! datagrams to one peer go out as one super-datagram) and a per-message
//! `IP_TOS`/`IPV6_TCLASS` (DSCP + ECN copied from the inner header, TR D.7 b);
//! `recvmmsg` with UDP GRO (`UDP_GRO`) and the received TOS (`IP_RECVTOS`).
//!
//! quinn-udp was considered: its `Transmit` carries only the ECN bits, not
//! the DSCP, and it sends one `sendmsg` per transmit; so this module talks
//! to the kernel directly (libc), with the same GSO/GRO ideas.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// Largest number of segments the kernel accepts in one GSO send.
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Largest UDP payload of one GSO send.
const MAX_GSO_BYTES: usize = 65_000;
/// Receive buffer per message: a GRO super-datagram can be up to 64 KiB.
pub const RX_BUF_LEN: usize = 65_536;

const CMSG_BUF: usize = 64;

#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct CmsgBuf([u8; CMSG_BUF]);

/// Socket configuration.
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// IKE port (500).
    pub ike_port: u16,
    /// NAT-T port (4500): ESP-in-UDP and IKE with the non-ESP marker.
    pub natt_port: u16,
    /// IPv4 address to bind (None: no IPv4 sockets).
    pub bind_v4: Option<Ipv4Addr>,
    /// IPv6 address to bind (None: no IPv6 sockets).
    pub bind_v6: Option<Ipv6Addr>,
    /// Open the IKE (500) sockets too.
    pub ike_sockets: bool,
    /// Try UDP GSO on send.
    pub gso: bool,
    /// Try UDP GRO on receive.
    pub gro: bool,
    /// SO_SNDBUF / SO_RCVBUF (bytes; forced if root).
    pub socket_buffer: usize,
    /// Receive timeout so workers can look at the stop flag.
    pub recv_timeout: Duration,
}

impl Default for UdpConfig {
    fn default() -> Self {
        Self {
            ike_port: dodvpn_wire::esp::IKE_PORT,
            natt_port: dodvpn_wire::esp::NAT_T_PORT,
            bind_v4: Some(Ipv4Addr::UNSPECIFIED),
            bind_v6: None,
            ike_sockets: true,
            gso: true,
            gro: true,
            socket_buffer: 8 << 20,
            recv_timeout: Duration::from_millis(250),
        }
    }
}

/// One UDP socket with batched send/receive.
#[derive(Debug)]
pub struct UdpSock {
    sock: Socket,
    v6: bool,
    gso: AtomicBool,
    gro: bool,
    local: SocketAddr,
}

fn setsockopt_int(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: valid fd, pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &v as *const libc::c_int as *const libc::c_void,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl UdpSock {
    /// Bind a socket at `addr` with the given options.
    pub fn bind(addr: SocketAddr, cfg: &UdpConfig) -> io::Result<UdpSock> {
        let v6 = addr.is_ipv6();
        let sock = Socket::new(
            if v6 { Domain::IPV6 } else { Domain::IPV4 },
            Type::DGRAM.cloexec(),
            Some(Protocol::UDP),
        )?;
        if v6 {
            sock.set_only_v6(true)?;
        }
        sock.set_reuse_address(true)?;
        sock.bind(&addr.into())?;
        let fd = sock.as_raw_fd();
        let buf = cfg.socket_buffer as libc::c_int;
        if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, buf).is_err() {
            let _ = sock.set_send_buffer_size(cfg.socket_buffer);
        }
        if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, buf).is_err() {
            let _ = sock.set_recv_buffer_size(cfg.socket_buffer);
        }
        if v6 {
            setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVTCLASS, 1)?;
        } else {
            setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_RECVTOS, 1)?;
        }
        let gro = cfg.gro && setsockopt_int(fd, SOL_UDP, UDP_GRO, 1).is_ok();
        if cfg.gro && !gro {
            tracing::info!("UDP GRO unavailable on {addr}; receiving datagram by datagram");
        }
        sock.set_read_timeout(Some(cfg.recv_timeout))?;
        let local = sock
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("no local address"))?;
        Ok(UdpSock {
            sock,
            v6,
            gso: AtomicBool::new(cfg.gso),
            gro,
            local,
        })
    }

    /// Local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
    /// IPv6 socket.
    pub fn is_v6(&self) -> bool {
        self.v6
    }
    /// GSO currently in use for sends.
    pub fn gso(&self) -> bool {
        self.gso.load(Relaxed)
    }
    /// GRO enabled for receives.
    pub fn gro(&self) -> bool {
        self.gro
    }
    /// The raw socket.
    pub fn socket(&self) -> &Socket {
        &self.sock
    }

    /// Send one datagram (control traffic: IKE, keepalives).
    pub fn send_to(&self, data: &[u8], dst: SocketAddr) -> io::Result<usize> {
        self.sock.send_to(data, &SockAddr::from(dst))
    }

    /// Receive one datagram (control sockets). Returns (len, source).
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        // SAFETY: u8 and MaybeUninit<u8> have the same layout; socket2 only writes.
        let uninit = unsafe {
            std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut MaybeUninit<u8>, buf.len())
        };
        let (n, from) = self.sock.recv_from(uninit)?;
        let from = from
            .as_socket()
            .ok_or_else(|| io::Error::other("non-IP source"))?;
        Ok((n, from))
    }
}

fn to_sockaddr(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    let sa = SockAddr::from(addr);
    let len = sa.len();
    // SAFETY: SockAddr holds a valid sockaddr of `len` bytes ≤ sizeof(sockaddr_storage).
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.as_ptr() as *const u8,
            out as *mut libc::sockaddr_storage as *mut u8,
            len as usize,
        );
    }
    len
}

fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: family says sockaddr_in.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: family says sockaddr_in6.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[derive(Debug, Clone, Copy)]
struct Group {
    dst: SocketAddr,
    tos: u8,
    seg: usize,
    iov_start: usize,
    iov_len: usize,
    bytes: usize,
    closed: bool,
}

/// Reusable state for batched sends (no allocation once warmed up).
pub struct TxBatch {
    groups: Vec<Group>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    addrs: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<CmsgBuf>,
    max_groups: usize,
    /// Datagrams sent through this batch.
    pub sent: u64,
    /// Datagrams that failed to send.
    pub failed: u64,
    /// sendmmsg calls made.
    pub syscalls: u64,
}

// SAFETY: the raw pointers in `iov`/`hdrs` are only meaningful during one
// `send` call and rewritten at the start of each; nothing is shared.
unsafe impl Send for TxBatch {}

impl std::fmt::Debug for TxBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxBatch")
            .field("sent", &self.sent)
            .field("failed", &self.failed)
            .field("syscalls", &self.syscalls)
            .finish()
    }
}

impl TxBatch {
    /// Room for `max_datagrams` datagrams per flush.
    pub fn new(max_datagrams: usize) -> Self {
        let n = max_datagrams.max(1);
        Self {
            groups: Vec::with_capacity(n),
            iov: Vec::with_capacity(n),
            hdrs: Vec::with_capacity(n),
            // SAFETY: all-zero sockaddr_storage is valid.
            addrs: vec![unsafe { mem::zeroed() }; n],
            cmsgs: vec![CmsgBuf([0; CMSG_BUF]); n],
            max_groups: n,
            sent: 0,
            failed: 0,
            syscalls: 0,
        }
    }

    /// Send `packets` (payload, destination, TOS byte) on `sock`, in order.
    /// Consecutive equal-size datagrams to one destination with one TOS are
    /// sent as one GSO message. Returns the number of datagrams the kernel
    /// accepted; failures are counted in `failed`.
    pub fn send<'a, I>(&mut self, sock: &UdpSock, packets: I) -> usize
    where
        I: IntoIterator<Item = (&'a [u8], SocketAddr, u8)>,
    {
        let before = self.sent;
        let gso = sock.gso();
        self.groups.clear();
        self.iov.clear();
        for (pkt, dst, tos) in packets {
            let len = pkt.len();
            let can_join = gso
                && match self.groups.last() {
                    Some(g) => {
                        !g.closed
                            && g.dst == dst
                            && g.tos == tos
                            && len <= g.seg
                            && g.iov_len < MAX_GSO_SEGMENTS
                            && g.bytes + len <= MAX_GSO_BYTES
                    }
                    None => false,
                };
            if !can_join
                && (self.groups.len() == self.max_groups || self.iov.len() == self.iov.capacity())
            {
                self.flush(sock);
            }
            self.iov.push(libc::iovec {
                iov_base: pkt.as_ptr() as *mut libc::c_void,
                iov_len: len,
            });
            if can_join {
                let g = self.groups.last_mut().expect("joined a group");
                g.iov_len += 1;
                g.bytes += len;
                if len < g.seg {
                    g.closed = true;
                }
            } else {
                self.groups.push(Group {
                    dst,
                    tos,
                    seg: len,
                    iov_start: self.iov.len() - 1,
                    iov_len: 1,
                    bytes: len,
                    closed: false,
                });
            }
        }
        self.flush(sock);
        (self.sent - before) as usize
    }

    fn flush(&mut self, sock: &UdpSock) {
        if self.groups.is_empty() {
            self.iov.clear();
            return;
        }
        let mut start = 0;
        while start < self.groups.len() {
            self.build_hdrs(sock, start);
            let n = self.hdrs.len();
            // SAFETY: hdrs point at iov/addrs/cmsgs owned by self and at
            // packet slices borrowed by the caller of `send` for this call.
            let r = unsafe {
                libc::sendmmsg(
                    sock.sock.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    0,
                )
            };
            self.syscalls += 1;
            if r > 0 {
                for g in &self.groups[start..start + r as usize] {
                    self.sent += g.iov_len as u64;
                }
                start += r as usize;
                continue;
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let g = self.groups[start];
            let code = err.raw_os_error().unwrap_or(0);
            if g.iov_len > 1
                && (code == libc::EIO || code == libc::EINVAL)
                && sock.gso.swap(false, Relaxed)
            {
                tracing::warn!(
                    "UDP GSO send failed ({err}); falling back to one datagram per message"
                );
            }
            if g.iov_len > 1 && !sock.gso() {
                // Split this group into single datagrams and retry.
                let singles: Vec<Group> = (0..g.iov_len)
                    .map(|k| Group {
                        seg: self.iov[g.iov_start + k].iov_len,
                        iov_start: g.iov_start + k,
                        iov_len: 1,
                        bytes: self.iov[g.iov_start + k].iov_len,
                        closed: true,
                        ..g
                    })
                    .collect();
                self.groups.splice(start..start + 1, singles);
                continue;
            }
            tracing::debug!("sendmmsg to {}: {err}", g.dst);
            self.failed += g.iov_len as u64;
            start += 1;
        }
        self.groups.clear();
        self.iov.clear();
    }

    fn build_hdrs(&mut self, sock: &UdpSock, start: usize) {
        self.hdrs.clear();
        for (k, g) in self.groups[start..].iter().enumerate() {
            let addr_len = to_sockaddr(g.dst, &mut self.addrs[k]);
            // SAFETY: zeroed msghdr is valid; we fill what we use.
            let mut msg: libc::msghdr = unsafe { mem::zeroed() };
            msg.msg_name = &mut self.addrs[k] as *mut _ as *mut libc::c_void;
            msg.msg_namelen = addr_len;
            msg.msg_iov = self.iov[g.iov_start..].as_mut_ptr();
            msg.msg_iovlen = g.iov_len as _;
            let cbuf = &mut self.cmsgs[k].0;
            msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = CMSG_BUF as _;
            let mut used = 0usize;
            // SAFETY: CMSG_* walk within cbuf (CMSG_BUF bytes, 8-aligned),
            // which has room for two int-sized control messages.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&msg);
                if sock.v6 {
                    (*c).cmsg_level = libc::IPPROTO_IPV6;
                    (*c).cmsg_type = libc::IPV6_TCLASS;
                } else {
                    (*c).cmsg_level = libc::IPPROTO_IP;
                    (*c).cmsg_type = libc::IP_TOS;
                }
                (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<libc::c_int>() as u32) as _;
                std::ptr::write_unaligned(
                    libc::CMSG_DATA(c) as *mut libc::c_int,
                    g.tos as libc::c_int,
                );
                used += libc::CMSG_SPACE(mem::size_of::<libc::c_int>() as u32) as usize;
                if g.iov_len > 1 {
                    msg.msg_controllen = used as _;
                    let c2 = (c as *mut u8)
                        .add(libc::CMSG_SPACE(mem::size_of::<libc::c_int>() as u32) as usize)
                        as *mut libc::cmsghdr;
                    (*c2).cmsg_level = SOL_UDP;
                    (*c2).cmsg_type = UDP_SEGMENT;
                    (*c2).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c2) as *mut u16, g.seg as u16);
                    used += libc::CMSG_SPACE(mem::size_of::<u16>() as u32) as usize;
                }
            }
            msg.msg_controllen = used as _;
            self.hdrs.push(libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            });
        }
    }
}

/// Metadata of one received message (possibly a GRO super-datagram).
#[derive(Debug, Clone, Copy)]
pub struct RxMeta {
    /// Bytes received.
    pub len: usize,
    /// Source address.
    pub src: SocketAddr,
    /// Outer TOS / traffic class byte.
    pub tos: u8,
    /// Segment size: the message holds `ceil(len / seg)` datagrams of `seg`
    /// bytes (the last may be shorter). Equal to `len` without GRO.
    pub seg: usize,
}

/// Reusable receive buffers for `recvmmsg`.
pub struct RxBatch {
    bufs: Vec<Box<[u8]>>,
    meta: Vec<RxMeta>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    addrs: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<CmsgBuf>,
    n: usize,
}

// SAFETY: pointers in iov/hdrs point into self.bufs etc. and are rebuilt
// before every recvmmsg call.
unsafe impl Send for RxBatch {}

impl std::fmt::Debug for RxBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxBatch").field("n", &self.n).finish()
    }
}

impl RxBatch {
    /// `messages` buffers of [`RX_BUF_LEN`] bytes.
    pub fn new(messages: usize) -> Self {
        let n = messages.max(1);
        Self {
            bufs: (0..n)
                .map(|_| vec![0u8; RX_BUF_LEN].into_boxed_slice())
                .collect(),
            meta: vec![
                RxMeta {
                    len: 0,
                    src: SocketAddr::from(([0, 0, 0, 0], 0)),
                    tos: 0,
                    seg: 0,
                };
                n
            ],
            iov: Vec::with_capacity(n),
            hdrs: Vec::with_capacity(n),
            // SAFETY: all-zero sockaddr_storage is valid.
            addrs: vec![unsafe { mem::zeroed() }; n],
            cmsgs: vec![CmsgBuf([0; CMSG_BUF]); n],
            n: 0,
        }
    }

    /// Messages received by the last [`recv`](Self::recv).
    pub fn len(&self) -> usize {
        self.n
    }
    /// No messages.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Message `i`'s bytes.
    pub fn message(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.meta[i].len]
    }

    /// Message `i`: metadata and its bytes (mutable, for in-place opening).
    pub fn message_mut(&mut self, i: usize) -> (RxMeta, &mut [u8]) {
        let m = self.meta[i];
        (m, &mut self.bufs[i][..m.len])
    }

    /// Receive up to the batch size of messages; blocks for the first
    /// (up to the socket's receive timeout). Returns the count.
    pub fn recv(&mut self, sock: &UdpSock) -> io::Result<usize> {
        let cap = self.bufs.len();
        self.iov.clear();
        self.hdrs.clear();
        for i in 0..cap {
            self.iov.push(libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: RX_BUF_LEN,
            });
        }
        for i in 0..cap {
            // SAFETY: zeroed msghdr is valid.
            let mut msg: libc::msghdr = unsafe { mem::zeroed() };
            msg.msg_name = &mut self.addrs[i] as *mut _ as *mut libc::c_void;
            msg.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as _;
            msg.msg_iov = &mut self.iov[i];
            msg.msg_iovlen = 1;
            msg.msg_control = self.cmsgs[i].0.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = CMSG_BUF as _;
            self.hdrs.push(libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            });
        }
        self.n = 0;
        let r = loop {
            // SAFETY: every pointer in hdrs refers to buffers owned by self.
            let r = unsafe {
                libc::recvmmsg(
                    sock.sock.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    cap as libc::c_uint,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            break r as usize;
        };
        for i in 0..r {
            let len = self.hdrs[i].msg_len as usize;
            let msg = &self.hdrs[i].msg_hdr;
            let mut tos = 0u8;
            let mut seg = len;
            // SAFETY: walking the control buffer the kernel filled.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(msg);
                while !c.is_null() {
                    let data = libc::CMSG_DATA(c);
                    match ((*c).cmsg_level, (*c).cmsg_type) {
                        (libc::IPPROTO_IP, libc::IP_TOS) => tos = *data,
                        (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => {
                            tos = std::ptr::read_unaligned(data as *const libc::c_int) as u8
                        }
                        (SOL_UDP, UDP_GRO) => {
                            let s = std::ptr::read_unaligned(data as *const libc::c_int);
                            if s > 0 {
                                seg = s as usize;
                            }
                        }
                        _ => {}
                    }
                    c = libc::CMSG_NXTHDR(msg, c);
                }
            }
            let src = from_sockaddr(&self.addrs[i]).unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
            self.meta[i] = RxMeta {
                len,
                src,
                tos,
                seg: seg.max(1),
            };
        }
        self.n = r;
        Ok(r)
    }
}

/// The data plane's UDP sockets: IKE (500) and NAT-T (4500), per family.
#[derive(Debug)]
pub struct Udp {
    /// IKE socket, IPv4.
    pub ike_v4: Option<UdpSock>,
    /// NAT-T socket, IPv4 (ESP-in-UDP and IKE with the non-ESP marker).
    pub natt_v4: Option<UdpSock>,
    /// IKE socket, IPv6.
    pub ike_v6: Option<UdpSock>,
    /// NAT-T socket, IPv6.
    pub natt_v6: Option<UdpSock>,
}

impl Udp {
    /// Bind the sockets `cfg` asks for.
    pub fn bind(cfg: &UdpConfig) -> io::Result<Udp> {
        let mk = |ip: Option<IpAddr>, port: u16, want: bool| -> io::Result<Option<UdpSock>> {
            match ip {
                Some(ip) if want => UdpSock::bind(SocketAddr::new(ip, port), cfg).map(Some),
                _ => Ok(None),
            }
        };
        let v4 = cfg.bind_v4.map(IpAddr::V4);
        let v6 = cfg.bind_v6.map(IpAddr::V6);
        let udp = Udp {
            ike_v4: mk(v4, cfg.ike_port, cfg.ike_sockets)?,
            natt_v4: mk(v4, cfg.natt_port, true)?,
            ike_v6: mk(v6, cfg.ike_port, cfg.ike_sockets)?,
            natt_v6: mk(v6, cfg.natt_port, true)?,
        };
        if udp.natt_v4.is_none() && udp.natt_v6.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no address family to bind",
            ));
        }
        Ok(udp)
    }

    /// The NAT-T socket for sending to `dst`.
    #[inline]
    pub fn natt_for(&self, dst: &SocketAddr) -> Option<&UdpSock> {
        if dst.is_ipv4() {
            self.natt_v4.as_ref()
        } else {
            self.natt_v6.as_ref()
        }
    }

    /// The IKE (500) socket for sending to `dst`.
    pub fn ike_for(&self, dst: &SocketAddr) -> Option<&UdpSock> {
        if dst.is_ipv4() {
            self.ike_v4.as_ref()
        } else {
            self.ike_v6.as_ref()
        }
    }

    /// Send an IKE message. On the NAT-T port (`natt = true`) the 4-byte
    /// non-ESP marker is prepended (RFC 3948 §2.2).
    pub fn send_ike(&self, natt: bool, dst: SocketAddr, ike_message: &[u8]) -> io::Result<usize> {
        let no_sock = || {
            io::Error::new(
                io::ErrorKind::NotConnected,
                "no socket for that family/port",
            )
        };
        if natt {
            let s = self.natt_for(&dst).ok_or_else(no_sock)?;
            let mut buf = Vec::with_capacity(4 + ike_message.len());
            buf.extend_from_slice(&dodvpn_wire::NON_ESP_MARKER);
            buf.extend_from_slice(ike_message);
            s.send_to(&buf, dst)
        } else {
            self.ike_for(&dst)
                .ok_or_else(no_sock)?
                .send_to(ike_message, dst)
        }
    }

    /// Send `bytes` unchanged from port 4500 (no marker): a relay binding, which
    /// must leave through the same NAT mapping as the ESP and IKE that follow it.
    pub fn send_natt_raw(&self, dst: SocketAddr, bytes: &[u8]) -> io::Result<usize> {
        self.natt_for(&dst)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no NAT-T socket"))?
            .send_to(bytes, dst)
    }

    /// Send a NAT keepalive (one 0xFF byte, RFC 3948 §2.3) from port 4500.
    pub fn send_keepalive(&self, dst: SocketAddr) -> io::Result<usize> {
        self.natt_for(&dst)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no NAT-T socket"))?
            .send_to(&dodvpn_wire::esp::NAT_KEEPALIVE, dst)
    }
}
