use reactor::kinds::{element, map};
use reactor::{input, step, Inputs, Reactor};
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn work(n: u64, rounds: u64) -> u64 {
    let mut x = n + 1;
    for i in 0..rounds {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(i ^ n);
        x ^= x >> 29;
    }
    x
}

fn main() {
    let cpu = std::env::args().nth(1).is_some();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let s = step("c").argument("n", element("m"));
    let s = if cpu { s.cpu_bound() } else { s };
    let s = s.run_sync(move |a, _| {
        let st = t0.elapsed();
        let v = work(*a.get::<u64>("n")?, 3_000_000);
        l.lock().unwrap().push((
            *a.get::<u64>("n")?,
            st.as_micros(),
            t0.elapsed().as_micros(),
            format!("{:?}", std::thread::current().id()),
        ));
        Ok(v)
    });
    let r = Reactor::builder("w")
        .input("numbers")
        .add(
            map("m", input("numbers"))
                .items::<u64>()
                .steps([s])
                .into_step()
                .unwrap(),
        )
        .returns("m")
        .build()
        .unwrap();
    let t = Instant::now();
    rt.block_on(async {
        r.run(Inputs::new().with("numbers", (0..64u64).collect::<Vec<_>>()))
            .max_concurrency(2)
            .await
    })
    .unwrap();
    eprintln!("total {:?}", t.elapsed());
    for e in log.lock().unwrap().iter() {
        eprintln!("{:?}", e);
    }
}
