"""A small TensorBoard event writer (scalars + hparams) that needs neither torch nor TensorFlow.

scikit-learn scripts must be able to write TensorBoard curves without importing torch (2 s and
hundreds of MB just for ``SummaryWriter``), so this writes the same protobufs torch's writer
does, with the ``tensorboard`` package's own event file writer. The HParams dashboard reads
three summaries per session (experiment, session start, session end) plus the metrics' scalar
series from the same run directory; they are written when the run finishes, once the metric
names are known.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

log = logging.getLogger(__name__)

HParamValue = int | float | str | bool


class TBWriter:
    """Append scalars and hparams to one TensorBoard run directory."""

    def __init__(self, logdir: str | Path, flush_secs: int = 5) -> None:
        # An object store URL (s3://bucket/prefix on a cluster profile) stays a URL: Path() would
        # turn it into the local folder ./s3:/bucket/prefix. TensorBoard's own file system layer
        # writes it (boto3, with S3_ENDPOINT and the AWS_* variables the Job sets).
        self.logdir: str | Path = str(logdir) if is_url(str(logdir)) else Path(logdir)
        self.scalar_tags: set[str] = set()
        self._closed = False
        self._writer: EventFileWriter | None = None
        if isinstance(self.logdir, Path):
            self.logdir.mkdir(parents=True, exist_ok=True)
        try:
            # flush_secs: TensorBoard reloads every few seconds, so curves appear while a run is going.
            self._writer = EventFileWriter(str(self.logdir), flush_secs=flush_secs)
        except Exception as err:
            if isinstance(self.logdir, Path):
                raise
            # the run goes on: its metrics still reach MLflow. (Python's last-resort handler shows
            # a warning on stderr in a training process that configured no logging.)
            log.warning("chiml: no TensorBoard events for this run: cannot write to %s (%s: %s)",
                        self.logdir, type(err).__name__, err)

    def scalar(self, tag: str, value: float, step: int | None = None, wall_time: float | None = None) -> None:
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])
        self._add(summary, step)
        self.scalar_tags.add(tag)

    def hparams(
        self,
        hparams: dict[str, Any],
        metric_tags: list[str] | None = None,
        success: bool = True,
    ) -> None:
        """Write the HParams plugin's experiment/session summaries for this run."""
        start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
        infos = []
        for name, value in hparams.items():
            value = _hparam_value(value)
            if isinstance(value, bool):
                start.hparams[name].bool_value = value
                kind = "DATA_TYPE_BOOL"
            elif isinstance(value, int | float):
                start.hparams[name].number_value = float(value)
                kind = "DATA_TYPE_FLOAT64"
            else:
                start.hparams[name].string_value = str(value)
                kind = "DATA_TYPE_STRING"
            infos.append(api_pb2.HParamInfo(name=name, type=api_pb2.DataType.Value(kind)))
        tags = sorted(metric_tags if metric_tags is not None else self.scalar_tags)
        experiment = api_pb2.Experiment(
            hparam_infos=infos, metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=t)) for t in tags]
        )
        status = api_pb2.Status.Value("STATUS_SUCCESS" if success else "STATUS_FAILURE")
        end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
        for tag, data in (
            (metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)),
            (metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
            (metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end)),
        ):
            data.version = metadata.PLUGIN_DATA_VERSION
            meta = SummaryMetadata(
                plugin_data=SummaryMetadata.PluginData(
                    plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString()
                )
            )
            self._add(Summary(value=[Summary.Value(tag=tag, metadata=meta)]), None)

    def flush(self) -> None:
        if not self._closed and self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if not self._closed and self._writer is not None:
            self._writer.close()
        self._closed = True

    def _add(self, summary: Summary, step: int | None) -> None:
        if self._writer is None:
            return
        event = Event(wall_time=time.time(), summary=summary)
        if step is not None:
            event.step = int(step)
        self._writer.add_event(event)


def is_url(logdir: str) -> bool:
    """``s3://...``, ``gs://...``: a log root that is not a local folder."""
    scheme, sep, _ = logdir.partition("://")
    return bool(sep) and scheme.isalnum() and len(scheme) > 1


def _hparam_value(value: Any) -> HParamValue:
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)
