"""Data in: metadata readers, filters, split, image decoding, TFRecord shards, prepared datasets,
sampling plans and the tf.data pipeline that realises them."""
