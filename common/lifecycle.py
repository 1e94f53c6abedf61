"""Things that run beside their caller (a server thread, a broker process), and `with` for them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class StartStop(ABC):
    """Has `start()` and `stop()`: `with it:` starts it, and stops it on the way out."""

    @abstractmethod
    def start(self) -> Self:
        """Begin running in the background; return self."""

    @abstractmethod
    def stop(self) -> None:
        """Stop running and let go of what was held."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
