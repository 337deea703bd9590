//! Whole array maps read in one pass: BPF_MAP_LOOKUP_BATCH copies thousands of entries per
//! system call, where aya's per-entry iteration makes one call per entry (100,000 backends
//! took 100,000 calls). aya 0.16 has no batch operations, so this is the system call itself.

use std::os::fd::{AsFd as _, AsRawFd as _};

use anyhow::{Context as _, bail};
use aya::{Pod, maps::Map};

use crate::maps::Maps;

/// BPF_MAP_LOOKUP_BATCH (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries asked for per call: large enough that a call's cost is the copy, small enough for
/// the kernel's temporary buffers. A hash map's bucket must fit in one call (ENOSPC
/// otherwise); buckets hold a handful of entries.
const CHUNK: u32 = 4096;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// What one walk of a map returned: `count` keys of `key_size` bytes and their values of
/// `value_size` bytes, in the map's order.
struct Walk {
    keys: Vec<u8>,
    values: Vec<u8>,
    count: usize,
}

/// Every entry of map `name` (an array, per-CPU array or hash map) in calls of [`CHUNK`]
/// entries. A per-CPU value is every CPU's value of the entry in a row, each padded to 8
/// bytes, as the kernel copies them.
fn walk(
    maps: &(impl Maps + ?Sized),
    name: &str,
    key_size: usize,
    value_size: usize,
) -> anyhow::Result<Walk> {
    let data = match maps.map(name)? {
        Map::Array(data) | Map::PerCpuArray(data) | Map::HashMap(data) => data,
        _ => bail!("map {name} cannot be read in batches"),
    };
    let entries = data
        .info()
        .with_context(|| format!("reading the size of {name}"))?
        .max_entries() as usize;
    let fd = data.fd().as_fd().as_raw_fd();
    let mut keys = vec![0u8; entries * key_size];
    let mut values = vec![0u8; entries * value_size];
    // Arrays walk by key (u32), hash maps by bucket (u32): the kernel's cursor is 4 bytes
    // either way; 8 leaves room.
    let mut cursor = [0u64; 2];
    let mut next = [0u64; 2];
    let mut count = 0;
    while count < entries {
        let mut attr = BatchAttr {
            in_batch: if count == 0 {
                0
            } else {
                cursor.as_ptr() as u64
            },
            out_batch: next.as_mut_ptr() as u64,
            keys: keys[count * key_size..].as_mut_ptr() as u64,
            values: values[count * value_size..].as_mut_ptr() as u64,
            count: CHUNK.min((entries - count) as u32),
            map_fd: fd as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is the batch member of bpf_attr; the key and value buffers from
        // `count` on hold `entries - count` entries, at least `attr.count`; the cursors hold
        // more than the 4 bytes the kernel writes.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                std::ptr::from_mut(&mut attr),
                size_of::<BatchAttr>(),
            )
        };
        let err = std::io::Error::last_os_error();
        count += attr.count as usize;
        cursor = next;
        if rc < 0 {
            // ENOENT: the walk reached the end (the last entries came with it).
            if err.raw_os_error() == Some(libc::ENOENT) {
                break;
            }
            return Err(err).with_context(|| format!("reading {name} in batches"));
        }
        if attr.count == 0 {
            break;
        }
    }
    Ok(Walk {
        keys,
        values,
        count,
    })
}

/// The `i`th value of `size` bytes in `bytes`.
fn value_at<V: Pod>(bytes: &[u8], i: usize, size: usize) -> V {
    let bytes = &bytes[i * size..(i + 1) * size];
    assert!(size >= size_of::<V>());
    // SAFETY: `bytes` holds at least size_of::<V>() bytes (checked above); V is Pod, so any
    // bytes are a valid V; read_unaligned needs no alignment.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<V>()) }
}

/// Every entry of hash map `name`, in the map's order.
pub fn hash_map<K: Pod, V: Pod>(
    maps: &(impl Maps + ?Sized),
    name: &str,
) -> anyhow::Result<Vec<(K, V)>> {
    let walk = walk(maps, name, size_of::<K>(), size_of::<V>())?;
    Ok((0..walk.count)
        .map(|i| {
            (
                value_at(&walk.keys, i, size_of::<K>()),
                value_at(&walk.values, i, size_of::<V>()),
            )
        })
        .collect())
}

/// Every entry of array map `name`, indexed by key, in a few system calls.
pub fn array<V: Pod>(maps: &(impl Maps + ?Sized), name: &str) -> anyhow::Result<Vec<V>> {
    let walk = walk(maps, name, 4, size_of::<V>())?;
    Ok((0..walk.count)
        .map(|i| value_at(&walk.values, i, size_of::<V>()))
        .collect())
}

/// Every entry of per-CPU array map `name`, each the sum over CPUs by `add`, indexed by key.
pub fn per_cpu_sums<V: Pod + Default>(
    maps: &(impl Maps + ?Sized),
    name: &str,
    add: impl Fn(&mut V, &V),
) -> anyhow::Result<Vec<V>> {
    let cpus = aya::util::nr_cpus()
        .map_err(|(what, err)| anyhow::anyhow!("{what}: {err}"))?
        .get() as usize;
    let padded = size_of::<V>().div_ceil(8) * 8;
    let walk = walk(maps, name, 4, padded * cpus)?;
    Ok((0..walk.count)
        .map(|i| {
            let mut sum = V::default();
            for cpu in 0..cpus {
                add(&mut sum, &value_at(&walk.values, i * cpus + cpu, padded));
            }
            sum
        })
        .collect())
}
