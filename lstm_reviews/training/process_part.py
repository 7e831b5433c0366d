"""ProcessPart: a PyDataset of global batches, each cut to this process's rows, for a run of
several processes (training.distribute.process_part). Its own module because it subclasses
Keras' PyDataset, and distribute must not load Keras for a run of one process."""

from __future__ import annotations

import keras


class ProcessPart(keras.utils.PyDataset):
    """The batches of `batches` (a PyDataset of global batches), each cut to this process's
    rows (this_process_part): what model.fit and model.evaluate read in a run of several
    processes."""

    def __init__(self, batches, this_process_part):
        super().__init__()
        self.batches = batches
        self.this_process_part = this_process_part  # distribute's: a batch -> this process's rows

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index):
        return self.this_process_part(self.batches[index])

    def on_epoch_end(self) -> None:
        self.batches.on_epoch_end()
