import java.time.Instant;
import java.util.Locale;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

/**
 * A small JVM server for the wall-clock library's tests: every tick it waits ~100 ms with one of
 * the JVM's waits in turn and prints "<wait> <System.nanoTime()/1e9> <System.currentTimeMillis()/1000> <Instant.now()>"
 * (System.nanoTime reads CLOCK_MONOTONIC, as Python's time.monotonic does).
 * Under the library the wall readings carry the offset and the ticks keep their pace through any
 * skew. Stops after args[0] seconds of System.nanoTime.
 */
public final class TickServer {
    private static final long STEP_MS = 100;

    private static String waitOnce(int kind) throws InterruptedException {
        switch (kind) {
            case 0:
                Thread.sleep(STEP_MS);
                return "Thread.sleep";
            case 1: {
                Object monitor = new Object();
                synchronized (monitor) {
                    monitor.wait(STEP_MS);
                }
                return "Object.wait";
            }
            case 2:
                LockSupport.parkNanos(STEP_MS * 1_000_000L);
                return "LockSupport.parkNanos";
            case 3:
                new ArrayBlockingQueue<Integer>(1).poll(STEP_MS, TimeUnit.MILLISECONDS);
                return "BlockingQueue.poll";
            default:
                new CountDownLatch(1).await(STEP_MS, TimeUnit.MILLISECONDS);
                return "CountDownLatch.await";
        }
    }

    public static void main(String[] args) throws Exception {
        double limit = args.length > 0 ? Double.parseDouble(args[0]) : 30.0;
        long start = System.nanoTime();
        for (int tick = 0; (System.nanoTime() - start) / 1e9 < limit; tick++) {
            String kind = waitOnce(tick % 5);
            Instant now = Instant.now();
            System.out.printf(Locale.ROOT, "%s %.6f %.6f %.6f%n", kind, System.nanoTime() / 1e9,
                    System.currentTimeMillis() / 1000.0,
                    now.getEpochSecond() + now.getNano() / 1e9);
            System.out.flush();
        }
    }
}
