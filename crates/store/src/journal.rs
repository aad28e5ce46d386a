//! [`Journal`]: the group-commit writer. One OS thread owns the [`Store`]; submitters queue
//! changes with a callback and the thread commits everything queued at that moment in one
//! transaction, then calls back each submitter in submission order.
//!
//! Why: a durable commit costs a write (and with `Durability::Full` an fsync) whatever its
//! size, so under load one commit for many calls is what keeps every answer durable
//! without the disk becoming the limit. Why a thread and std channels rather than tokio:
//! the store is synchronous (SQLite), and a thread of its own keeps its blocking I/O off
//! the async runtime; callbacks let an async caller wait on a oneshot without this crate
//! knowing about tokio.
//!
//! INVARIANT: messages are handled in the order they were queued. A batch stops at a read
//! ([`Journal::with_store`], [`Journal::flush`]), so a read sees every change submitted
//! before it and none submitted after it.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;

use crate::{Change, Store, StoreError};

/// Called once with the outcome of the transaction that carried a submission.
pub type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

type Read = Box<dyn FnOnce(&dyn Store) + Send>;

/// At most this many changes go in one transaction (a single larger submission still goes
/// whole, alone): bounds the time one commit holds everybody's callbacks.
pub const MAX_BATCH_CHANGES: usize = 4096;

enum Message {
    Submit(Vec<Change>, Done),
    Read(Read),
}

/// A writer thread owning a store. Dropping it (or [`Journal::shutdown`]) applies what is
/// queued, then stops the thread. `Sync`: share it (`Arc<Journal>`) between submitters.
pub struct Journal {
    // `None` only while dropping, or if the writer thread could not be started.
    inbox: Option<mpsc::Sender<Message>>,
    writer: Option<thread::JoinHandle<Box<dyn Store>>>,
}

impl Journal {
    /// Starts the writer thread. If the OS refuses a thread, the error is logged and the
    /// journal is closed: every submission and read fails with [`StoreError::Closed`].
    pub fn start(store: Box<dyn Store>) -> Journal {
        let (inbox, queue) = mpsc::channel();
        match thread::Builder::new()
            .name("tollgate-journal".into())
            .spawn(move || run(store, queue))
        {
            Ok(writer) => Journal {
                inbox: Some(inbox),
                writer: Some(writer),
            },
            Err(error) => {
                tracing::error!(%error, "store: cannot start the journal thread");
                Journal {
                    inbox: None,
                    writer: None,
                }
            }
        }
    }

    /// Queues `changes`; `done` is called on the writer thread once they are committed
    /// (or failed, with the error of their batch). Never blocks. If the journal is closed,
    /// `done` is called at once, here, with [`StoreError::Closed`].
    ///
    /// `done` must be quick and must not call [`Journal::flush`] or
    /// [`Journal::with_store`] (they return [`StoreError::Reentrant`] there).
    pub fn submit(&self, changes: Vec<Change>, done: Done) {
        let Some(inbox) = &self.inbox else {
            done(Err(StoreError::Closed));
            return;
        };
        // The channel gives the message back when the writer is gone: answer it here.
        if let Err(mpsc::SendError(Message::Submit(_, done))) =
            inbox.send(Message::Submit(changes, done))
        {
            done(Err(StoreError::Closed));
        }
    }

    /// Runs `read` on the writer thread after everything submitted so far is applied, and
    /// returns its result. A panic in `read` is resumed here, on the caller's thread.
    pub fn with_store<R, F>(&self, read: F) -> Result<R, StoreError>
    where
        F: FnOnce(&dyn Store) -> R + Send + 'static,
        R: Send + 'static,
    {
        if self.is_writer_thread() {
            return Err(StoreError::Reentrant);
        }
        let inbox = self.inbox.as_ref().ok_or(StoreError::Closed)?;
        let (reply, answer) = mpsc::sync_channel::<Result<R, Box<dyn Any + Send>>>(1);
        let job: Read = Box::new(move |store| {
            let result = catch_unwind(AssertUnwindSafe(|| read(store)));
            // The caller may have gone; nothing to do then.
            let _ = reply.send(result);
        });
        inbox
            .send(Message::Read(job))
            .map_err(|_| StoreError::Closed)?;
        match answer.recv() {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(payload)) => resume_unwind(payload),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// Blocks until everything submitted so far is applied and its callbacks called.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.with_store(|_| ())
    }

    /// Applies what is queued, stops the thread and gives the store back.
    pub fn shutdown(mut self) -> Result<Box<dyn Store>, StoreError> {
        self.stop().ok_or(StoreError::Closed)
    }

    fn stop(&mut self) -> Option<Box<dyn Store>> {
        // Closing the channel ends the writer's loop once it has drained the queue.
        drop(self.inbox.take());
        let writer = self.writer.take()?;
        match writer.join() {
            Ok(store) => Some(store),
            Err(_) => {
                tracing::error!("store: the journal thread panicked");
                None
            }
        }
    }

    fn is_writer_thread(&self) -> bool {
        self.writer
            .as_ref()
            .is_some_and(|writer| writer.thread().id() == thread::current().id())
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if self.is_writer_thread() {
            // Dropped from a callback on the writer thread: joining would wait for itself.
            // Closing the inbox is enough, the thread ends after its queue.
            drop(self.inbox.take());
            return;
        }
        self.stop();
    }
}

/// The writer loop: one message at a time, consecutive submissions merged into one
/// transaction up to [`MAX_BATCH_CHANGES`].
fn run(mut store: Box<dyn Store>, queue: mpsc::Receiver<Message>) -> Box<dyn Store> {
    // A message taken from the queue while draining that does not belong in the batch.
    let mut next: Option<Message> = None;
    loop {
        let message = match next.take() {
            Some(message) => message,
            // Err: every sender is gone and the queue is empty.
            None => match queue.recv() {
                Ok(message) => message,
                Err(_) => break,
            },
        };
        match message {
            Message::Read(read) => read(store.as_ref()),
            Message::Submit(mut batch, done) => {
                let mut dones = vec![done];
                while batch.len() < MAX_BATCH_CHANGES {
                    match queue.try_recv() {
                        Ok(Message::Submit(changes, done)) => {
                            if batch.len() + changes.len() > MAX_BATCH_CHANGES {
                                next = Some(Message::Submit(changes, done));
                                break;
                            }
                            batch.extend(changes);
                            dones.push(done);
                        }
                        Ok(read) => {
                            next = Some(read);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let result = store.apply(&batch);
                match &result {
                    Ok(()) => tracing::trace!(
                        changes = batch.len(),
                        submissions = dones.len(),
                        "store: batch committed"
                    ),
                    Err(error) => tracing::error!(
                        %error,
                        changes = batch.len(),
                        submissions = dones.len(),
                        "store: batch failed and was rolled back"
                    ),
                }
                for done in dones {
                    let outcome = result.clone();
                    // A panicking callback must not take the writer (and every later
                    // submission) down with it.
                    if catch_unwind(AssertUnwindSafe(move || done(outcome))).is_err() {
                        tracing::error!("store: a journal callback panicked");
                    }
                }
            }
        }
    }
    store
}
