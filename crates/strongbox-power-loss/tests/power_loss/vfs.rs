//! [`PowerCutVfs`]: an in-memory SQLite VFS that knows, for every file, what a power cut would
//! leave of it.
//!
//! Each file keeps two contents:
//! - the *volatile* one, what SQLite reads back: every write and truncation, at once;
//! - the *durable* one, the file as of its last `xSync` (`None` until its first sync: a file
//!   created and never synced does not exist after a cut),
//!
//! plus the list of writes and truncations issued since that sync, in order. A sync applies them
//! to the durable content. [`Disk::cut`] freezes what a power cut at that instant could leave:
//! every durable content, plus some of the unsynced writes (see [`CutMode`]).
//!
//! The device promises only what the operating system's VFS promises on Linux (a sector of
//! 4,096 bytes and `SQLITE_IOCAP_POWERSAFE_OVERWRITE`: a write changes no byte outside its
//! range): writes between two syncs may reach the disk in any order, in part, or not at all.
//!
//! The shared memory of WAL mode (the `-shm` file) lives in this process's memory, shared by
//! the connections of the process; it is never durable, and SQLite rebuilds it from the WAL
//! after a cut. File locks and shared-memory locks follow SQLite's semantics among the
//! connections of this process. A deletion counts as durable at once (SQLite deletes only a WAL
//! it has checkpointed and synced). Everything sits behind one mutex: slow, but simple to trust.
//!
//! Built on `sqlite-plugin`, which turns a safe Rust trait into SQLite's C VFS; the only
//! pointer handed to SQLite is the shared memory's (see `shm_map`).

use std::collections::HashMap;
use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};

use sqlite_plugin::flags::{AccessFlags, CreateMode, LockLevel, OpenMode, OpenOpts, ShmLockMode};
use sqlite_plugin::vars;
use sqlite_plugin::vfs::{RegisterOpts, Vfs, VfsHandle, VfsResult, register_static};

/// The sector size the device reports (the unix VFS's default).
const SECTOR_SIZE: i32 = 4096;

/// The unit in which [`CutMode::Scrambled`] tears a write, as a disk does: each 512-byte piece
/// is either old or new.
const TEAR_UNIT: usize = 512;

/// SQLite's shared-memory lock slots (`SQLITE_SHM_NLOCK`).
const SHM_SLOTS: usize = 8;

/// One write or truncation not yet synced.
#[derive(Debug, Clone)]
enum Op {
    Write { offset: usize, data: Vec<u8> },
    Truncate(usize),
}

impl Op {
    fn apply(&self, content: &mut Vec<u8>) {
        match self {
            Op::Write { offset, data } => write_at(content, *offset, data),
            Op::Truncate(size) => content.resize(*size, 0),
        }
    }
}

fn write_at(content: &mut Vec<u8>, offset: usize, data: &[u8]) {
    let end = offset + data.len();
    if content.len() < end {
        content.resize(end, 0);
    }
    content[offset..end].copy_from_slice(data);
}

#[derive(Debug, Default)]
struct FileData {
    volatile: Vec<u8>,
    /// The content as of the last sync; `None`: never synced.
    durable: Option<Vec<u8>>,
    /// Writes and truncations since the last sync, in the order SQLite issued them.
    pending: Vec<Op>,
    /// A nameless temporary file (sorting, `VACUUM`): never part of a cut.
    temporary: bool,
}

/// The file locks of one path (SQLite's SHARED, RESERVED, PENDING, EXCLUSIVE).
#[derive(Debug, Default)]
struct FileLock {
    shared: usize,
    reserved: Option<u64>,
    pending: Option<u64>,
    exclusive: Option<u64>,
}

/// The shared memory of one database: 32 KiB regions whose addresses never change while
/// mapped (SQLite keeps the pointers), and its locks.
#[derive(Debug, Default)]
struct Shm {
    regions: Vec<Box<[AtomicU8]>>,
    /// Handles that mapped it; at zero it is dropped, so the next connection starts afresh
    /// (as the unix VFS truncates a `-shm` file no process has open).
    mapped: usize,
    shared: [usize; SHM_SLOTS],
    exclusive: [Option<u64>; SHM_SLOTS],
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<String, FileData>,
    locks: HashMap<String, FileLock>,
    shm: HashMap<String, Shm>,
    next_handle: u64,
    /// The file that received the last write.
    last_written: Option<String>,
    syncs: u64,
    /// A cut to take in the middle of a coming write.
    trigger: Option<Trigger>,
}

/// A cut armed by [`Disk::cut_within`]: taken when the `countdown`th write from now has been
/// issued (and not synced), from inside that write.
struct Trigger {
    countdown: usize,
    /// Counts only writes to database files (not WALs): in WAL mode, a checkpoint's.
    database_only: bool,
    mode: CutMode,
    rng: Box<dyn Random + Send>,
    before_freezing: Box<dyn FnOnce() -> usize + Send>,
    done: mpsc::Sender<(usize, Image)>,
}

impl std::fmt::Debug for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trigger")
            .field("countdown", &self.countdown)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// How much of what was not synced a cut keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutMode {
    /// Only durable contents.
    Synced,
    /// Durable contents, plus the first k unsynced writes of the file written last, the
    /// (k+1)th possibly cut short: a torn tail.
    TornTail,
    /// Durable contents, plus, in every file, any subset of the unsynced writes, each either
    /// whole or torn sector by sector (each 512-byte piece old or new): what a disk that
    /// reorders its cache may leave.
    Scrambled,
}

/// The files a power cut left: path and content.
#[derive(Debug)]
pub struct Image {
    /// Every file that exists after the cut.
    pub files: Vec<(String, Vec<u8>)>,
    /// Writes and truncations not synced when the cut fell, by file.
    pub unsynced: Vec<(String, usize)>,
}

/// A randomness source for cuts: any function returning uniformly random `u64`s.
pub trait Random {
    /// The next random number.
    fn next_u64(&mut self) -> u64;
    /// A number below `n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// The test's handle on the VFS's files: loads files into it, takes cuts, forgets files.
#[derive(Debug, Clone)]
pub struct Disk(Arc<Mutex<State>>);

impl Disk {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts a file into the VFS as if it were on disk and synced.
    pub fn load(&self, path: &str, content: Vec<u8>) {
        let mut state = self.state();
        state.files.insert(
            path.to_owned(),
            FileData {
                volatile: content.clone(),
                durable: Some(content),
                pending: Vec::new(),
                temporary: false,
            },
        );
    }

    /// Drops every file whose path starts with `prefix` (the store on them must be closed).
    pub fn forget(&self, prefix: &str) {
        let mut state = self.state();
        state.files.retain(|path, _| !path.starts_with(prefix));
        state.locks.retain(|path, _| !path.starts_with(prefix));
        state.shm.retain(|path, _| !path.starts_with(prefix));
    }

    /// Syncs so far, over all files.
    pub fn syncs(&self) -> u64 {
        self.state().syncs
    }

    /// A power cut now. `before_freezing` runs first, under the VFS's lock, so that nothing
    /// reaches a file between it and the freezing: the test reads there which writes were
    /// acknowledged (each of those synced before its acknowledgement, hence before the cut).
    pub fn cut<T>(
        &self,
        mode: CutMode,
        rng: &mut dyn Random,
        before_freezing: impl FnOnce() -> T,
    ) -> (T, Image) {
        let state = self.state();
        let seen = before_freezing();
        (seen, state.freeze(mode, rng))
    }

    /// Arms a cut to fall in the middle of the `writes`th write from now (that write issued,
    /// not synced), counting only writes to database files when `database_only` (in WAL mode
    /// those are a checkpoint's), taken from inside that write as [`Disk::cut`] would; the
    /// answer arrives on the returned channel. Replaces a cut armed before and not taken yet.
    pub fn cut_within(
        &self,
        writes: usize,
        database_only: bool,
        mode: CutMode,
        rng: Box<dyn Random + Send>,
        before_freezing: Box<dyn FnOnce() -> usize + Send>,
    ) -> mpsc::Receiver<(usize, Image)> {
        let (done, answer) = mpsc::channel();
        self.state().trigger = Some(Trigger {
            countdown: writes.max(1),
            database_only,
            mode,
            rng,
            before_freezing,
            done,
        });
        answer
    }

    /// Drops a cut armed by [`Disk::cut_within`] that has not fallen yet.
    pub fn disarm(&self) {
        self.state().trigger = None;
    }
}

impl State {
    /// What a power cut now leaves.
    fn freeze(&self, mode: CutMode, rng: &mut dyn Random) -> Image {
        let mut files = Vec::new();
        let mut unsynced = Vec::new();
        let mut paths: Vec<&String> = self.files.keys().collect();
        paths.sort();
        for path in paths {
            let file = &self.files[path];
            if file.temporary {
                continue;
            }
            unsynced.push((path.clone(), file.pending.len()));
            let Some(durable) = &file.durable else {
                continue;
            };
            let mut content = durable.clone();
            match mode {
                CutMode::Synced => {}
                CutMode::TornTail => {
                    if self.last_written.as_ref() == Some(path) {
                        let kept = rng.below(file.pending.len() + 1);
                        for op in &file.pending[..kept] {
                            op.apply(&mut content);
                        }
                        if let Some(Op::Write { offset, data }) = file.pending.get(kept)
                            && data.len() > 1
                            && rng.below(2) == 0
                        {
                            let torn = 1 + rng.below(data.len() - 1);
                            write_at(&mut content, *offset, &data[..torn]);
                        }
                    }
                }
                CutMode::Scrambled => {
                    for op in &file.pending {
                        match (op, rng.below(3)) {
                            (_, 0) => {}
                            (_, 1) | (Op::Truncate(_), _) => op.apply(&mut content),
                            (Op::Write { offset, data }, _) => {
                                // Torn: each 512-byte piece (aligned on the file) old or new.
                                let mut at = 0;
                                while at < data.len() {
                                    let end = ((offset + at) / TEAR_UNIT + 1) * TEAR_UNIT - offset;
                                    let end = end.min(data.len());
                                    if rng.below(2) == 0 {
                                        write_at(&mut content, offset + at, &data[at..end]);
                                    }
                                    at = end;
                                }
                            }
                        }
                    }
                }
            }
            files.push((path.clone(), content));
        }
        Image { files, unsynced }
    }
}

/// The VFS registered with SQLite.
struct PowerCutVfs(Arc<Mutex<State>>);

/// Registers the VFS under `name` (once per process) and returns its [`Disk`].
pub fn register(name: &str) -> Disk {
    let state = Arc::new(Mutex::new(State::default()));
    register_static(
        CString::new(name).expect("a VFS name without NUL"),
        PowerCutVfs(state.clone()),
        RegisterOpts {
            make_default: false,
        },
    )
    .unwrap_or_else(|code| panic!("registering the VFS failed: SQLite error {code}"));
    Disk(state)
}

/// One open file of one connection.
#[derive(Debug)]
pub struct Handle {
    id: u64,
    path: String,
    readonly: bool,
    delete_on_close: bool,
    lock: LockLevel,
    shm_mapped: bool,
    shm_held: [Option<ShmHeld>; SHM_SLOTS],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShmHeld {
    Shared,
    Exclusive,
}

impl VfsHandle for Handle {
    fn readonly(&self) -> bool {
        self.readonly
    }

    fn in_memory(&self) -> bool {
        false
    }
}

impl PowerCutVfs {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn file(&mut self, path: &str) -> VfsResult<&mut FileData> {
        self.files.get_mut(path).ok_or(vars::SQLITE_IOERR)
    }

    fn release_shm(&mut self, handle: &mut Handle) {
        let Some(shm) = self.shm.get_mut(&handle.path) else {
            handle.shm_held = [None; SHM_SLOTS];
            handle.shm_mapped = false;
            return;
        };
        for slot in 0..SHM_SLOTS {
            match handle.shm_held[slot].take() {
                Some(ShmHeld::Shared) => shm.shared[slot] -= 1,
                Some(ShmHeld::Exclusive) => shm.exclusive[slot] = None,
                None => {}
            }
        }
        if std::mem::take(&mut handle.shm_mapped) {
            shm.mapped -= 1;
            if shm.mapped == 0 {
                self.shm.remove(&handle.path);
            }
        }
    }
}

impl Vfs for PowerCutVfs {
    type Handle = Handle;

    fn open(&self, path: Option<&str>, opts: OpenOpts) -> VfsResult<Handle> {
        let mut state = self.state();
        state.next_handle += 1;
        let id = state.next_handle;
        let mode = opts.mode();
        let path = match path {
            Some(path) => {
                let exists = state.files.contains_key(path);
                match (&mode, exists) {
                    (OpenMode::ReadWrite { create }, true) if *create == CreateMode::MustCreate => {
                        return Err(vars::SQLITE_CANTOPEN);
                    }
                    (_, true) => {}
                    (OpenMode::ReadWrite { create }, false) if *create != CreateMode::None => {
                        state.files.insert(path.to_owned(), FileData::default());
                    }
                    (_, false) => return Err(vars::SQLITE_CANTOPEN),
                }
                path.to_owned()
            }
            None => {
                let path = format!("temporary file {id}");
                state.files.insert(
                    path.clone(),
                    FileData {
                        temporary: true,
                        ..FileData::default()
                    },
                );
                path
            }
        };
        Ok(Handle {
            id,
            path,
            readonly: mode.is_readonly(),
            delete_on_close: opts.delete_on_close(),
            lock: LockLevel::Unlocked,
            shm_mapped: false,
            shm_held: [None; SHM_SLOTS],
        })
    }

    fn delete(&self, path: &str) -> VfsResult<()> {
        // The unlink is taken as durable at once: SQLite deletes only files it no longer needs
        // (the WAL, after a checkpoint it synced).
        match self.state().files.remove(path) {
            Some(_) => Ok(()),
            None => Err(vars::SQLITE_IOERR_DELETE_NOENT),
        }
    }

    fn access(&self, path: &str, _flags: AccessFlags) -> VfsResult<bool> {
        Ok(self.state().files.contains_key(path))
    }

    fn file_size(&self, handle: &mut Handle) -> VfsResult<usize> {
        Ok(self.state().file(&handle.path)?.volatile.len())
    }

    fn truncate(&self, handle: &mut Handle, size: usize) -> VfsResult<()> {
        let mut state = self.state();
        let file = state.file(&handle.path)?;
        let op = Op::Truncate(size);
        op.apply(&mut file.volatile);
        if !file.temporary {
            file.pending.push(op);
        }
        Ok(())
    }

    fn write(&self, handle: &mut Handle, offset: usize, data: &[u8]) -> VfsResult<usize> {
        let mut state = self.state();
        let file = state.file(&handle.path)?;
        write_at(&mut file.volatile, offset, data);
        if !file.temporary {
            file.pending.push(Op::Write {
                offset,
                data: data.to_vec(),
            });
            state.last_written = Some(handle.path.clone());
            let is_wal = handle.path.ends_with("-wal");
            if let Some(trigger) = &mut state.trigger
                && !(trigger.database_only && is_wal)
            {
                trigger.countdown -= 1;
                if trigger.countdown == 0
                    && let Some(mut trigger) = state.trigger.take()
                {
                    let seen = (trigger.before_freezing)();
                    let image = state.freeze(trigger.mode, &mut *trigger.rng);
                    // The test may have given up waiting; the cut is then simply not checked.
                    let _ = trigger.done.send((seen, image));
                }
            }
        }
        Ok(data.len())
    }

    fn read(&self, handle: &mut Handle, offset: usize, data: &mut [u8]) -> VfsResult<usize> {
        let mut state = self.state();
        let file = state.file(&handle.path)?;
        let available = file.volatile.len().saturating_sub(offset).min(data.len());
        if available > 0 {
            data[..available].copy_from_slice(&file.volatile[offset..offset + available]);
        }
        Ok(available)
    }

    fn sync(&self, handle: &mut Handle) -> VfsResult<()> {
        let mut state = self.state();
        state.syncs += 1;
        let file = state.file(&handle.path)?;
        if file.temporary {
            return Ok(());
        }
        let mut durable = file.durable.take().unwrap_or_default();
        for op in file.pending.drain(..) {
            op.apply(&mut durable);
        }
        // Both are the same writes applied in the same order (comparing lengths is cheap).
        assert_eq!(
            durable.len(),
            file.volatile.len(),
            "the durable image drifted"
        );
        file.durable = Some(durable);
        Ok(())
    }

    fn lock(&self, handle: &mut Handle, level: LockLevel) -> VfsResult<()> {
        if handle.lock >= level {
            return Ok(());
        }
        let mut state = self.state();
        let lock = state.locks.entry(handle.path.clone()).or_default();
        let id = handle.id;
        let other = |holder: Option<u64>| holder.is_some_and(|holder| holder != id);
        match level {
            LockLevel::Unlocked => {}
            LockLevel::Shared => {
                if lock.pending.is_some() || lock.exclusive.is_some() {
                    return Err(vars::SQLITE_BUSY);
                }
                lock.shared += 1;
                handle.lock = LockLevel::Shared;
            }
            LockLevel::Reserved => {
                if lock.reserved.is_some() || lock.pending.is_some() || lock.exclusive.is_some() {
                    return Err(vars::SQLITE_BUSY);
                }
                lock.reserved = Some(id);
                handle.lock = LockLevel::Reserved;
            }
            LockLevel::Pending | LockLevel::Exclusive => {
                if other(lock.reserved) || other(lock.pending) || other(lock.exclusive) {
                    return Err(vars::SQLITE_BUSY);
                }
                lock.pending = Some(id);
                handle.lock = LockLevel::Pending;
                if level == LockLevel::Exclusive {
                    // Wait (by failing) until the other connections' SHARED locks are gone.
                    if lock.shared > 1 {
                        return Err(vars::SQLITE_BUSY);
                    }
                    lock.exclusive = Some(id);
                    handle.lock = LockLevel::Exclusive;
                }
            }
        }
        Ok(())
    }

    fn unlock(&self, handle: &mut Handle, level: LockLevel) -> VfsResult<()> {
        if handle.lock <= level {
            return Ok(());
        }
        let mut state = self.state();
        let lock = state.locks.entry(handle.path.clone()).or_default();
        let id = handle.id;
        for holder in [&mut lock.reserved, &mut lock.pending, &mut lock.exclusive] {
            if *holder == Some(id) {
                *holder = None;
            }
        }
        if level == LockLevel::Unlocked && handle.lock >= LockLevel::Shared {
            lock.shared -= 1;
        }
        handle.lock = level;
        Ok(())
    }

    fn check_reserved_lock(&self, handle: &mut Handle) -> VfsResult<bool> {
        let mut state = self.state();
        let lock = state.locks.entry(handle.path.clone()).or_default();
        Ok(lock.reserved.is_some() || lock.pending.is_some() || lock.exclusive.is_some())
    }

    fn close(&self, mut handle: Handle) -> VfsResult<()> {
        self.unlock(&mut handle, LockLevel::Unlocked)?;
        let mut state = self.state();
        state.release_shm(&mut handle);
        let temporary = state
            .files
            .get(&handle.path)
            .is_some_and(|file| file.temporary);
        if handle.delete_on_close || temporary {
            state.files.remove(&handle.path);
        }
        Ok(())
    }

    fn sector_size(&self, _handle: &mut Handle) -> VfsResult<i32> {
        Ok(SECTOR_SIZE)
    }

    fn device_characteristics(&self, _handle: &mut Handle) -> VfsResult<i32> {
        // What SQLite's unix VFS reports on Linux: no atomic, ordered or append-safe writes.
        Ok(vars::SQLITE_IOCAP_POWERSAFE_OVERWRITE)
    }

    fn shm_map(
        &self,
        handle: &mut Handle,
        region_idx: usize,
        region_size: usize,
        extend: bool,
    ) -> VfsResult<Option<NonNull<u8>>> {
        let mut state = self.state();
        let shm = state.shm.entry(handle.path.clone()).or_default();
        if !handle.shm_mapped {
            handle.shm_mapped = true;
            shm.mapped += 1;
        }
        if shm.regions.len() <= region_idx {
            if !extend {
                return Ok(None);
            }
            while shm.regions.len() <= region_idx {
                shm.regions
                    .push((0..region_size).map(|_| AtomicU8::new(0)).collect());
            }
        }
        let region = &shm.regions[region_idx];
        if region.len() != region_size {
            return Err(vars::SQLITE_IOERR_SHMSIZE);
        }
        // SQLite reads and writes the region through this pointer from any connection: the
        // bytes are atomics, so shared mutation through them is allowed, and the boxed slice
        // stays at this address until the last connection unmaps it.
        Ok(Some(NonNull::from(&**region).cast::<u8>()))
    }

    fn shm_lock(
        &self,
        handle: &mut Handle,
        offset: u32,
        count: u32,
        mode: ShmLockMode,
    ) -> VfsResult<()> {
        let mut state = self.state();
        let shm = state
            .shm
            .get_mut(&handle.path)
            .ok_or(vars::SQLITE_IOERR_SHMLOCK)?;
        let slots = offset as usize..(offset + count) as usize;
        if slots.end > SHM_SLOTS {
            return Err(vars::SQLITE_IOERR_SHMLOCK);
        }
        let id = handle.id;
        match mode {
            ShmLockMode::LockShared => {
                for slot in slots.clone() {
                    if handle.shm_held[slot].is_none()
                        && shm.exclusive[slot].is_some_and(|holder| holder != id)
                    {
                        return Err(vars::SQLITE_BUSY);
                    }
                }
                for slot in slots {
                    if handle.shm_held[slot].is_none() {
                        shm.shared[slot] += 1;
                        handle.shm_held[slot] = Some(ShmHeld::Shared);
                    }
                }
            }
            ShmLockMode::LockExclusive => {
                for slot in slots.clone() {
                    let own_shared = usize::from(handle.shm_held[slot] == Some(ShmHeld::Shared));
                    if shm.exclusive[slot].is_some_and(|holder| holder != id)
                        || shm.shared[slot] > own_shared
                    {
                        return Err(vars::SQLITE_BUSY);
                    }
                }
                for slot in slots {
                    if handle.shm_held[slot] == Some(ShmHeld::Shared) {
                        shm.shared[slot] -= 1;
                    }
                    shm.exclusive[slot] = Some(id);
                    handle.shm_held[slot] = Some(ShmHeld::Exclusive);
                }
            }
            ShmLockMode::UnlockShared | ShmLockMode::UnlockExclusive => {
                for slot in slots {
                    match handle.shm_held[slot].take() {
                        Some(ShmHeld::Shared) => shm.shared[slot] -= 1,
                        Some(ShmHeld::Exclusive) => shm.exclusive[slot] = None,
                        None => {}
                    }
                }
            }
        }
        Ok(())
    }

    fn shm_barrier(&self, _handle: &mut Handle) {
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    fn shm_unmap(&self, handle: &mut Handle, _delete: bool) -> VfsResult<()> {
        self.state().release_shm(handle);
        Ok(())
    }
}
