"""The clinician's pages and the REST API: the top layer, composing the record, the runs and the similar
cases. Nothing below it (``cases``, ``segmentation``, ``recommender``) imports it."""
