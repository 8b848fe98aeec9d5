"""Long work (sending to a modality, exporting) as jobs: state, progress, cancel.

A job runs in its own thread; its function reports progress and checks for
cancellation through the :class:`JobContext` it is given.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pacsnode.node.dates import now_string
from pacsnode.node.errors import NotFound

log = logging.getLogger(__name__)
_KEPT_JOBS = 500


class JobState(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCESS = "Success"
    FAILURE = "Failure"
    CANCELLED = "Cancelled"


class JobCancelled(Exception):
    """Raised inside a job function when the job has been cancelled."""


@dataclass
class Job:
    id: str
    type: str
    description: dict[str, Any]
    state: JobState = JobState.PENDING
    progress: int = 0
    created: str = field(default_factory=now_string)
    completed: str | None = None
    error: str | None = None
    content: dict[str, Any] = field(default_factory=dict)
    cancelled: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    def as_json(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Type": self.type,
            "State": self.state.value,
            "Progress": self.progress,
            "CreationTime": self.created,
            "CompletionTime": self.completed,
            "ErrorDescription": self.error,
            "Content": self.content,
            "Description": self.description,
        }


class JobContext:
    def __init__(self, job: Job) -> None:
        self._job = job

    @property
    def job_id(self) -> str:
        return self._job.id

    def progress(self, done: int, total: int, **content: Any) -> None:
        if self._job.cancelled.is_set():
            raise JobCancelled
        self._job.progress = 100 if total == 0 else min(100, done * 100 // total)
        self._job.content.update(content)


JobFunction = Callable[[JobContext], dict[str, Any]]


class JobRegistry:
    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._guard = threading.Lock()

    def submit(self, job_type: str, description: dict[str, Any], work: JobFunction) -> Job:
        job = Job(uuid.uuid4().hex, job_type, description)
        with self._guard:
            self._jobs[job.id] = job
            while len(self._jobs) > _KEPT_JOBS:
                self._jobs.popitem(last=False)
        threading.Thread(
            target=self._run, args=(job, work), name=f"job-{job_type}", daemon=True
        ).start()
        return job

    def track(self, job_type: str, description: dict[str, Any]) -> Job:
        """A job whose work runs on the caller's thread (an incoming C-MOVE runs in the
        DICOM server's): listed at once as running; the caller ends it with :meth:`end`."""
        job = Job(uuid.uuid4().hex, job_type, description, state=JobState.RUNNING)
        with self._guard:
            self._jobs[job.id] = job
            while len(self._jobs) > _KEPT_JOBS:
                self._jobs.popitem(last=False)
        return job

    @staticmethod
    def end(job: Job, error: str | None = None) -> None:
        """Finish a tracked job: Success, or Failure with ``error``."""
        job.state = JobState.FAILURE if error else JobState.SUCCESS
        job.error = error
        if not error:
            job.progress = 100
        job.completed = now_string()
        job.finished.set()

    def _run(self, job: Job, work: JobFunction) -> None:
        job.state = JobState.RUNNING
        try:
            job.content.update(work(JobContext(job)))
            job.state, job.progress = JobState.SUCCESS, 100
        except JobCancelled:
            job.state = JobState.CANCELLED
        except Exception as exc:  # the job reports it; the node goes on
            log.warning("job %s (%s) failed: %s", job.id, job.type, exc)
            job.state = JobState.FAILURE
            job.error = str(getattr(exc, "message", exc))
        finally:
            job.completed = now_string()
            job.finished.set()

    def get(self, job_id: str) -> Job:
        with self._guard:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job

    def ids(self) -> list[str]:
        with self._guard:
            return list(self._jobs)

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        job.cancelled.set()
        return job
