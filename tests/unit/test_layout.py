"""The shard count is recorded in the data dir, and a start with another count is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.deployment_store import DataDirStore
from herald.errors import ConfigError
from herald.layout import check_layout, shards_in_files


def test_the_first_start_records_the_count_and_the_same_count_starts_again(tmp_path: Path) -> None:
    check_layout(DataDirStore(tmp_path), 4)
    check_layout(DataDirStore(tmp_path), 4)
    assert (tmp_path / "queue" / "layout.json").read_text().strip() == '{"shards": 4}'


def test_another_count_is_refused_naming_the_variable(tmp_path: Path) -> None:
    check_layout(DataDirStore(tmp_path), 4)
    with pytest.raises(ConfigError, match=r"HERALD_SHARDS: .* written by 4 shards, not 8"):
        check_layout(DataDirStore(tmp_path), 8)


def test_a_data_dir_from_before_the_layout_file_is_judged_by_its_shard_files(
    tmp_path: Path,
) -> None:
    queue = tmp_path / "queue"
    queue.mkdir()
    for i in range(2):
        (queue / f"shard-{i}.db").touch()
    assert shards_in_files(tmp_path) == 2
    with pytest.raises(ConfigError, match="HERALD_SHARDS=2"):
        check_layout(DataDirStore(tmp_path), 4, shards_in_files(tmp_path))
    check_layout(DataDirStore(tmp_path), 2, shards_in_files(tmp_path))
