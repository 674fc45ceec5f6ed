//! The registers a native unwind starts from, wherever they come from: a live thread held in
//! ptrace-stop, or a core file's `NT_PRSTATUS` note.
//!
//! Unwinding on x86_64 needs only three of them (the instruction, stack and frame pointers):
//! DWARF CFI of real code computes the canonical frame address from `rsp` or `rbp` and finds
//! the return address relative to it.

/// The registers of one stopped thread that unwinding needs (x86_64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Registers {
    /// `rip`: the instruction the thread stopped at.
    pub ip: u64,
    /// `rsp`.
    pub sp: u64,
    /// `rbp` (the frame pointer, where code keeps one).
    pub bp: u64,
}

impl Registers {
    /// The registers of thread `tid`, which the calling thread holds in ptrace-stop (see
    /// [`crate::sample::pause`]): `PTRACE_GETREGS`.
    pub fn of_stopped_thread(tid: i32) -> std::io::Result<Registers> {
        // SAFETY: user_regs_struct is plain old data; zeroed is a valid value.
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        // SAFETY: PTRACE_GETREGS writes one user_regs_struct to the pointer given as data.
        let r = unsafe {
            libc::ptrace(
                libc::PTRACE_GETREGS,
                tid,
                0usize,
                &mut regs as *mut libc::user_regs_struct,
            )
        };
        if r == -1 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Registers {
            ip: regs.rip,
            sp: regs.rsp,
            bp: regs.rbp,
        })
    }
}

mod prstatus {
    use super::Registers;

    /// Offset of `pr_pid` in the x86_64 `struct elf_prstatus` (after `pr_info`, `pr_cursig`
    /// and its padding, `pr_sigpend`, `pr_sighold`).
    pub(super) const PID: usize = 32;
    /// Offset of `pr_reg` (a `struct user_regs_struct`) in the x86_64 `struct elf_prstatus`.
    pub(super) const REGS: usize = 112;
    /// Indexes of `rbp`, `rip` and `rsp` among the 8-byte words of `user_regs_struct`.
    pub(super) const RBP: usize = 4;
    pub(super) const RIP: usize = 16;
    pub(super) const RSP: usize = 19;
    /// Words in `user_regs_struct`.
    const USER_REGS_WORDS: usize = 27;

    impl Registers {
        /// The thread id and registers in the descriptor of an x86_64 core file's
        /// `NT_PRSTATUS` note (one per thread; the kernel and gdb's `gcore` write the same
        /// layout). `None` if the descriptor is too short to be one.
        pub fn from_prstatus(desc: &[u8]) -> Option<(i32, Registers)> {
            let word = |i: usize| {
                let at = REGS.checked_add(i.checked_mul(8)?)?;
                let bytes = desc.get(at..at.checked_add(8)?)?;
                Some(u64::from_le_bytes(bytes.try_into().ok()?))
            };
            word(USER_REGS_WORDS - 1)?; // the whole register block is there
            let pid = desc.get(PID..PID + 4)?;
            let pid = i32::from_le_bytes(pid.try_into().ok()?);
            Some((
                pid,
                Registers {
                    ip: word(RIP)?,
                    sp: word(RSP)?,
                    bp: word(RBP)?,
                },
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prstatus::*;
    use super::*;

    #[test]
    fn prstatus_words_are_at_the_kernels_offsets() {
        let mut desc = vec![0u8; 336];
        desc[PID..PID + 4].copy_from_slice(&4242i32.to_le_bytes());
        let mut put = |i: usize, v: u64| {
            desc[REGS + i * 8..REGS + i * 8 + 8].copy_from_slice(&v.to_le_bytes())
        };
        put(RBP, 0x7ffd_0000_1000);
        put(RIP, 0x5555_0000_2000);
        put(RSP, 0x7ffd_0000_0f00);
        let (pid, regs) = Registers::from_prstatus(&desc).unwrap();
        assert_eq!(pid, 4242);
        assert_eq!(
            regs,
            Registers {
                ip: 0x5555_0000_2000,
                sp: 0x7ffd_0000_0f00,
                bp: 0x7ffd_0000_1000
            }
        );
        assert!(Registers::from_prstatus(&desc[..200]).is_none());
        assert!(Registers::from_prstatus(&[]).is_none());
    }

    #[test]
    fn a_thread_not_traced_by_us_has_no_registers() {
        assert!(Registers::of_stopped_thread(std::process::id() as i32).is_err());
    }
}
