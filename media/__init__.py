"""Media I/O, the layer every other package stands on: decode video frames by presentation time
(``media.video``), read / resample / write audio (``media.audio``), write videos (``media.video_writer``) and mux
music into a video (``media.mux``). It knows nothing of models or datasets."""
