//! Checking thousands of connections on every core: each connection's own checks and its
//! final keys and hashes do not depend on the others, so the work is split into contiguous
//! chunks, one thread each, and the results (and the errors, in the order a single pass
//! gives them) are joined in order. Small sets, and a process limited to one core
//! (`std::thread::available_parallelism` reads the cgroup quota), run in the calling thread.

use crate::error::FieldError;

/// Below this many items a set is checked in the calling thread (a thread costs more).
const MIN_PARALLEL: usize = 512;

/// `f` over `items` in order, each call with the error list it appends to; the outputs and
/// the errors are those of one pass in order.
pub fn map_in_order<T, R, F>(items: Vec<T>, f: F) -> (Vec<R>, Vec<FieldError>)
where
    T: Send,
    R: Send,
    F: Fn(T, &mut Vec<FieldError>) -> R + Sync,
{
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len() / MIN_PARALLEL)
        .max(1);
    let run = |chunk: Vec<T>| {
        let mut errors = Vec::new();
        let out: Vec<R> = chunk.into_iter().map(|t| f(t, &mut errors)).collect();
        (out, errors)
    };
    if threads == 1 {
        return run(items);
    }
    let size = items.len().div_ceil(threads);
    let mut chunks: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut items = items.into_iter();
    loop {
        let chunk: Vec<T> = items.by_ref().take(size).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    let run = &run;
    let results: Vec<(Vec<R>, Vec<FieldError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| s.spawn(move || run(chunk)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (o, e) in results {
        out.extend(o);
        errors.extend(e);
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_and_errors_keep_the_order_of_one_pass() {
        for n in [0, 1, 511, 512, 1024, 5001] {
            let (out, errors) = map_in_order((0..n).collect(), |i: usize, errors| {
                if i.is_multiple_of(7) {
                    errors.push(FieldError::new(format!("connections.c{i}"), "seven"));
                }
                i * 2
            });
            assert_eq!(out, (0..n).map(|i| i * 2).collect::<Vec<_>>());
            let paths: Vec<String> = errors.into_iter().map(|e| e.path).collect();
            let want: Vec<String> = (0..n)
                .filter(|i| i.is_multiple_of(7))
                .map(|i| format!("connections.c{i}"))
                .collect();
            assert_eq!(paths, want, "{n}");
        }
    }
}
