"""Maps and detections of the signs on new scans (launch/predict.py); see run.py."""
