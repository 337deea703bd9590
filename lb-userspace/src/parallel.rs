//! CPU-bound work over independent items (Maglev table builds): a scoped thread per CPU.

use std::{num::NonZeroUsize, sync::OnceLock};

/// `f` of every item, in item order, the items split into one run per available CPU. A
/// panic in `f` is resumed in the caller.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    // Asked once: the answer reads the cgroup's files, at every reload otherwise.
    static THREADS: OnceLock<usize> = OnceLock::new();
    let threads =
        *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get));
    if items.len() < 2 || threads < 2 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::map;

    #[test]
    fn keeps_item_order_across_threads() {
        let items: Vec<u32> = (0..1000).collect();
        assert_eq!(
            map(&items, |i| i * 2),
            (0..1000).map(|i| i * 2).collect::<Vec<_>>()
        );
        assert!(map(&[] as &[u32], |i| *i).is_empty());
    }
}
