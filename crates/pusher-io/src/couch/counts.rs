//! Requests sent by one [`CouchClient`](super::CouchClient) (and its clones), by what
//! they were for and how CouchDB answered: what `/metrics` exposes as
//! `pusher_couch_requests_total{op,answer}`, and how tests and the bench count the
//! requests a registration costs (pouchdb-server keeps no request log to read).

use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::StatusCode;

/// What a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `GET /db/doc`.
    GetDoc,
    /// `POST /db/_all_docs` with `keys`: several documents in one read.
    GetDocs,
    /// `PUT /db/doc`.
    PutDoc,
    /// `POST /db/_bulk_docs`.
    BulkDocs,
    /// `GET /db/_changes`.
    Changes,
    /// Server and database calls: ping, create, delete, info.
    Db,
    /// Attachment reads and writes.
    Attachment,
    /// View and `_all_docs` reads.
    View,
}

impl Op {
    /// Every op, in rendering order.
    pub const ALL: [Op; 8] = [
        Op::GetDoc,
        Op::GetDocs,
        Op::PutDoc,
        Op::BulkDocs,
        Op::Changes,
        Op::Db,
        Op::Attachment,
        Op::View,
    ];

    /// Stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::GetDoc => "get_doc",
            Op::GetDocs => "get_docs",
            Op::PutDoc => "put_doc",
            Op::BulkDocs => "bulk_docs",
            Op::Changes => "changes",
            Op::Db => "db",
            Op::Attachment => "attachment",
            Op::View => "view",
        }
    }
}

/// How CouchDB answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 2xx.
    Ok,
    /// 404.
    NotFound,
    /// 409: a write based on a revision that is no longer the current one.
    Conflict,
    /// Any other status.
    Error,
    /// No answer (connection refused or broken, timeout).
    Unreachable,
}

impl Answer {
    /// Every answer, in rendering order.
    pub const ALL: [Answer; 5] = [
        Answer::Ok,
        Answer::NotFound,
        Answer::Conflict,
        Answer::Error,
        Answer::Unreachable,
    ];

    /// Stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Ok => "ok",
            Answer::NotFound => "not_found",
            Answer::Conflict => "conflict",
            Answer::Error => "error",
            Answer::Unreachable => "unreachable",
        }
    }

    pub(super) fn of(status: StatusCode) -> Self {
        match status {
            s if s.is_success() => Answer::Ok,
            StatusCode::NOT_FOUND => Answer::NotFound,
            StatusCode::CONFLICT => Answer::Conflict,
            _ => Answer::Error,
        }
    }
}

/// Counters of requests by [`Op`] and [`Answer`]; shared by a client and its clones.
#[derive(Debug, Default)]
pub struct RequestCounts {
    counts: [[AtomicU64; Answer::ALL.len()]; Op::ALL.len()],
}

impl RequestCounts {
    pub(super) fn add(&self, op: Op, answer: Answer) {
        self.counts[op as usize][answer as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests for `op` answered `answer` so far.
    pub fn get(&self, op: Op, answer: Answer) -> u64 {
        self.counts[op as usize][answer as usize].load(Ordering::Relaxed)
    }

    /// Requests for `op`, whatever the answer.
    pub fn total(&self, op: Op) -> u64 {
        Answer::ALL.iter().map(|a| self.get(op, *a)).sum()
    }

    /// Every non-zero counter, in a fixed order.
    pub fn snapshot(&self) -> Vec<(Op, Answer, u64)> {
        Op::ALL
            .iter()
            .flat_map(|op| Answer::ALL.iter().map(move |a| (*op, *a)))
            .map(|(op, a)| (op, a, self.get(op, a)))
            .filter(|(_, _, n)| *n > 0)
            .collect()
    }
}
