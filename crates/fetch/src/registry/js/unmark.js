// The choice did not reload the page (no navigation within the grace): forget the mark so the
// page reads as settled again.
delete window.__registreStep;
window.__registreLeaving = false;
return 'ok';
