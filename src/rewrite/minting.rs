//! The token calls of one page: started in page order, at most each embed's
//! `concurrency` at once, cancelled with the page.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::task::{Context, Poll};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use tokio::task::JoinSet;

use crate::allowlist::Principal;
use crate::embed::EmbedSet;
use crate::token::remote::MintCall;
use crate::token::{MintError, OnMintError};

/// One announced call: where its token goes and how to get it.
pub struct Job {
    /// The marker's slot.
    pub slot: usize,
    /// Index of the embed whose minter makes the call.
    pub embed: usize,
    /// `?token=` (or `&token=`), written before the token.
    pub param: String,
    /// The call.
    pub call: MintCall,
}

/// What goes where a marker stood.
pub enum Resolution {
    /// The parameter and the token, ready to send.
    Token(String),
    /// No token; what the embed's `on_error` says happens next.
    Failed(MintError, OnMintError),
}

/// The calls of one page.
pub struct Minting {
    embeds: Arc<EmbedSet>,
    principal: Principal,
    waiting: VecDeque<Job>,
    running: JoinSet<(usize, Result<Arc<str>, MintError>)>,
    in_flight: Vec<usize>,
    // Slot -> (embed, param), for calls started and not yet placed.
    started: HashMap<usize, (usize, String)>,
    finished: HashMap<usize, Result<Arc<str>, MintError>>,
}

// A token goes into a query string inside an attribute value: anything that
// could end either is escaped. EdgeAuth's own `=`, `~`, `!`, `*`, `/` stay readable.
const TOKEN_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'=')
    .remove(b'!')
    .remove(b'*')
    .remove(b'/')
    .remove(b':')
    .remove(b',');

impl Minting {
    /// No calls yet, for `principal` with `embeds`.
    pub fn new(embeds: Arc<EmbedSet>, principal: Principal) -> Minting {
        let count = embeds.len();
        Minting {
            embeds,
            principal,
            waiting: VecDeque::new(),
            running: JoinSet::new(),
            in_flight: vec![0; count],
            started: HashMap::new(),
            finished: HashMap::new(),
        }
    }

    /// Queues calls the handler announced.
    pub fn add(&mut self, jobs: Vec<Job>) {
        self.waiting.extend(jobs);
    }

    /// Starts waiting calls, in page order, as each embed's limit allows.
    pub fn start(&mut self) {
        let mut index = 0;
        while index < self.waiting.len() {
            let embed = self.waiting[index].embed;
            let Some(minter) = self.embeds.get(embed).and_then(|e| e.remote()) else {
                // Not a remote embed: cannot happen; the slot fails.
                let job = self.waiting.remove(index).expect("index in range");
                self.started.insert(job.slot, (job.embed, job.param));
                self.finished.insert(
                    job.slot,
                    Err(MintError::Unavailable("no remote minter".into())),
                );
                continue;
            };
            if self.in_flight[embed] >= minter.concurrency() {
                index += 1;
                continue;
            }
            let job = self.waiting.remove(index).expect("index in range");
            self.in_flight[embed] += 1;
            let minter = minter.clone();
            let principal = self.principal.clone();
            let Job {
                slot,
                embed,
                param,
                call,
            } = job;
            self.started.insert(slot, (embed, param));
            self.running
                .spawn(async move { (slot, minter.token(&call, &principal).await) });
        }
    }

    /// Takes the results of calls that ended; true if any did.
    pub fn poll_finished(&mut self, cx: &mut Context<'_>) -> bool {
        let mut any = false;
        while let Poll::Ready(Some(done)) = self.running.poll_join_next(cx) {
            any = true;
            // A call task never panics; a cancelled one ends only with the page.
            let Ok((slot, result)) = done else { continue };
            if let Some((embed, _)) = self.started.get(&slot) {
                self.in_flight[*embed] = self.in_flight[*embed].saturating_sub(1);
            }
            self.finished.insert(slot, result);
        }
        any
    }

    /// The embed whose call fills `slot`.
    pub fn embed_of(&self, slot: usize) -> Option<usize> {
        self.started
            .get(&slot)
            .map(|(embed, _)| *embed)
            .or_else(|| {
                self.waiting
                    .iter()
                    .find(|j| j.slot == slot)
                    .map(|j| j.embed)
            })
    }

    /// What goes in `slot`, once its call has ended.
    pub fn resolve(&mut self, slot: usize) -> Option<Resolution> {
        let result = self.finished.remove(&slot)?;
        let (embed, param) = self.started.remove(&slot)?;
        let on_error = self
            .embeds
            .get(embed)
            .and_then(|e| e.remote())
            .map_or(OnMintError::Page, |m| m.on_error());
        Some(match result {
            Ok(token) => {
                let mut text = param;
                text.extend(percent_encoding::utf8_percent_encode(&token, TOKEN_SAFE));
                Resolution::Token(text)
            }
            Err(err) => Resolution::Failed(err, on_error),
        })
    }
}
