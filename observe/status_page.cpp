// The status page at / : one self-contained HTML document (no external assets, works offline),
// refreshed every 2 s from /api/status; readable on a phone.
namespace walfold::observe {

namespace {

constexpr const char* kStatusPage = R"PAGE(<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>walfold status</title>
<style>
:root{--fg:#1d2330;--muted:#667085;--bg:#f6f7f9;--card:#fff;--ok:#1a7f37;--bad:#c62828;--warn:#b26a00;--line:#2f6fde}
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg)}
header{background:#1d2330;color:#fff;padding:.6em 1em;display:flex;flex-wrap:wrap;gap:.5em 1.5em;align-items:baseline}
header h1{font-size:1.2em;margin:0}header span{color:#c8cdd6}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:12px;padding:12px}
section{background:var(--card);border-radius:8px;padding:10px 14px;box-shadow:0 1px 2px rgba(0,0,0,.08);overflow-x:auto}
h2{font-size:1em;margin:.2em 0 .6em;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
table{border-collapse:collapse;width:100%}td,th{padding:3px 6px;text-align:left;border-bottom:1px solid #eef0f3}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}.muted{color:var(--muted)}
.big{font-size:1.6em;font-weight:600;font-variant-numeric:tabular-nums}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:8px}
.kpi div:first-child{color:var(--muted);font-size:.85em}
canvas{width:100%;height:90px;display:block}
button{font:inherit;padding:3px 10px;border-radius:5px;border:1px solid #c5cad3;background:#fff;cursor:pointer}
button.danger{border-color:var(--bad);color:var(--bad)}
#confirm{display:none;position:fixed;left:0;right:0;bottom:0;background:#fff3cd;border-top:2px solid var(--warn);padding:12px;gap:8px;align-items:center;flex-wrap:wrap}
#confirm.show{display:flex}
pre{white-space:pre-wrap;word-break:break-all;font-size:.85em;background:#f3f4f6;padding:6px;border-radius:4px;max-height:16em;overflow:auto}
#dead td:nth-child(5){max-width:18em;word-break:break-word}
</style></head>
<body>
<header><h1>walfold</h1><span id="proc">…</span><span id="state">…</span><span id="updated" class="muted"></span></header>
<main>
<section><h2>Replication</h2><div class="kpis">
 <div class="kpi"><div>lag (bytes)</div><div class="big" id="lag-bytes">–</div></div>
 <div class="kpi"><div>lag (seconds)</div><div class="big" id="lag-seconds">–</div></div>
 <div class="kpi"><div>fold rate (rows/s)</div><div class="big" id="fold-rate">–</div></div>
 <div class="kpi"><div>dead keys</div><div class="big" id="dead-count">–</div></div>
</div>
<table><tbody>
<tr><td>slot</td><td id="slot"></td></tr>
<tr><td>WAL end</td><td id="wal-end"></td></tr>
<tr><td>received</td><td id="received-lsn"></td></tr>
<tr><td>enqueued</td><td id="enqueued-lsn"></td></tr>
<tr><td>confirmed (checkpoint)</td><td id="confirmed-lsn"></td></tr>
</tbody></table></section>
<section><h2>Lag, last minutes</h2><canvas id="chart-lag" width="600" height="90"></canvas>
<h2>Rows folded per second</h2><canvas id="chart-rate" width="600" height="90"></canvas></section>
<section><h2>Counters</h2><table><tbody>
<tr><td>commits received</td><td class="n" id="commits-received"></td></tr>
<tr><td>rows received</td><td class="n" id="rows-received"></td></tr>
<tr><td>jobs enqueued</td><td class="n" id="jobs-enqueued"></td></tr>
<tr><td>jobs folded</td><td class="n" id="jobs-folded"></td></tr>
<tr><td>rows folded</td><td class="n" id="rows-folded"></td></tr>
<tr><td>MongoDB write commands</td><td class="n" id="mongodb-write-commands"></td></tr>
<tr><td>fold errors</td><td class="n" id="fold-errors"></td></tr>
</tbody></table></section>
<section><h2>Servers</h2><table id="servers"><tbody></tbody></table>
<div id="problems"></div></section>
<section><h2>Queue</h2><div id="queue-summary" class="muted"></div>
<table id="queue"><thead><tr><th>priority</th><th class="n">ready</th><th class="n">active</th><th class="n">delayed</th><th class="n">dead</th><th class="n">jobs</th></tr></thead><tbody></tbody></table></section>
<section><h2>Dead letters</h2><table id="dead"><thead><tr><th>key</th><th class="n">attempts</th><th>commit LSN</th><th class="n">jobs</th><th>reason</th><th></th></tr></thead><tbody></tbody></table>
<div id="dead-empty" class="muted">none</div><div id="inspect"></div><div id="action-result"></div></section>
<section><h2>Processes</h2><table id="processes"><thead><tr><th>process</th><th>role</th><th>version</th><th>last heartbeat</th><th>confirmed</th></tr></thead><tbody></tbody></table></section>
<section><h2>Checkpoint history</h2><div id="checkpoint"></div><table id="history"><tbody></tbody></table></section>
</main>
<div id="confirm"><span id="confirm-text"></span><button id="confirm-yes" class="danger">Confirm</button><button id="confirm-no">Cancel</button></div>
<script>
"use strict";
let last=null, pending=null;
const $=id=>document.getElementById(id);
const fmt=n=>n===null||n===undefined?"–":Number(n).toLocaleString("en-US");
const esc=s=>String(s??"").replace(/[&<>"']/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
const ago=ms=>{const s=Math.max(0,(Date.now()-ms)/1000);return s<90?s.toFixed(0)+" s ago":(s/60).toFixed(1)+" min ago";};
function chart(id,points,color){
  const c=$(id),g=c.getContext("2d"),w=c.width,h=c.height;g.clearRect(0,0,w,h);
  const v=points.filter(p=>p[1]!==null);g.fillStyle="#667085";g.font="11px sans-serif";
  if(v.length<2){g.fillText("collecting…",4,14);return;}
  const max=Math.max(1,...v.map(p=>p[1])),t0=v[0][0],t1=v[v.length-1][0]||t0+1;
  g.strokeStyle=color;g.lineWidth=2;g.beginPath();
  v.forEach((p,i)=>{const x=(p[0]-t0)/Math.max(1,t1-t0)*(w-4)+2,y=h-4-(p[1]/max)*(h-20);i?g.lineTo(x,y):g.moveTo(x,y);});
  g.stroke();g.fillText("max "+fmt(Math.round(max)),4,12);
}
function render(s){
  last=s;
  $("proc").textContent=s.process.id+" · "+s.process.role+" · v"+s.process.version;
  const ready=s.readiness.length===0;
  $("state").innerHTML=ready?'<b class="ok">ready</b>':'<b class="bad">not ready</b>';
  $("updated").textContent="sampled "+ago(s.sampled_ms);
  $("lag-bytes").textContent=fmt(s.lag.bytes);
  $("lag-seconds").textContent=s.lag.seconds===null?"–":s.lag.seconds.toFixed(1);
  $("fold-rate").textContent=fmt(Math.round(s.fold_rate_rows_per_second));
  const dead=s.queue?s.queue.dead_keys:null;$("dead-count").textContent=fmt(dead);
  $("dead-count").className="big "+(dead>0?"bad":"ok");
  $("slot").innerHTML=esc(s.slot.name)+" "+(s.slot.exists?'<span class="'+(s.slot.wal_status==="lost"?"bad":"ok")+'">'+esc(s.slot.wal_status)+"</span>":'<span class="bad">missing</span>');
  $("wal-end").textContent=s.lsn.wal_end;$("received-lsn").textContent=s.lsn.received;
  $("enqueued-lsn").textContent=s.lsn.enqueued;$("confirmed-lsn").textContent=s.lsn.confirmed;
  for(const [k,v] of Object.entries(s.counters)){const e=$(k.replace(/_/g,"-"));if(e)e.textContent=fmt(v);}
  $("servers").tBodies[0].innerHTML=Object.entries(s.servers).map(([n,v])=>"<tr><td>"+n+'</td><td class="'+(v.ok?"ok":"bad")+'">'+(v.ok?"up":"DOWN")+"</td><td>"+esc(v.address)+"</td></tr>"+(v.ok?"":'<tr><td colspan="3"><pre>'+esc(v.error)+"</pre></td></tr>")).join("");
  $("problems").innerHTML=s.readiness.map(p=>'<div class="warn">'+esc(p)+"</div>").join("");
  if(s.queue){$("queue-summary").textContent=fmt(s.queue.pending_jobs)+" pending jobs; keys: ready "+s.queue.ready_keys+", active "+s.queue.active_keys+", delayed "+s.queue.delayed_keys+", dead "+s.queue.dead_keys+(s.queue.paused?" — PAUSED":"");
    $("queue").tBodies[0].innerHTML=s.queue.by_priority.map(c=>"<tr><td>"+c.priority+'</td><td class="n">'+c.ready+'</td><td class="n">'+c.active+'</td><td class="n">'+c.delayed+'</td><td class="n">'+c.dead+'</td><td class="n">'+fmt(c.jobs)+"</td></tr>").join("");}
  $("dead-empty").style.display=s.dead.length?"none":"block";
  $("dead").tBodies[0].innerHTML=s.dead.map(d=>'<tr data-key="'+esc(d.key)+'"><td>'+esc(d.key)+'</td><td class="n">'+d.attempts+"</td><td>"+esc(d.lsn)+'</td><td class="n">'+d.jobs+"</td><td>"+esc(String(d.reason).slice(0,90))+'</td><td><button class="inspect">inspect</button>'+(s.admin?' <button class="retry">retry</button> <button class="purge danger">purge</button>':"")+"</td></tr>").join("");
  $("processes").tBodies[0].innerHTML=s.processes.map(p=>"<tr><td>"+esc(p.id)+"</td><td>"+esc(p.role)+(p.workers?" ("+p.workers+" workers)":"")+"</td><td>"+esc(p.version)+"</td><td>"+ago(p.heartbeat_ms)+"</td><td>"+esc(p.confirmed_lsn)+"</td></tr>").join("");
  $("checkpoint").innerHTML=s.checkpoint.lsn?"saved in MongoDB: <b>"+esc(s.checkpoint.lsn)+"</b> ("+ago(s.checkpoint.saved_ms)+")":'<span class="muted">no checkpoint in MongoDB yet</span>';
  $("history").tBodies[0].innerHTML=s.checkpoint.history.slice().reverse().map(h=>"<tr><td>"+(h.at_ms?new Date(h.at_ms).toISOString().replace("T"," ").slice(0,19):"")+"</td><td>"+esc(h.lsn)+"</td><td>"+esc(h.event)+"</td></tr>").join("");
  const hs=s.history;chart("chart-lag",hs.map(p=>[p.at_ms,p.lag_bytes]),"#2f6fde");
  chart("chart-rate",hs.slice(1).map((p,i)=>[p.at_ms,(p.rows_folded-hs[i].rows_folded)*1000/Math.max(1,p.at_ms-hs[i].at_ms)]),"#1a7f37");
  document.body.dataset.loaded=String(s.sampled_ms);
}
async function refresh(){
  try{const r=await fetch("/api/status",{cache:"no-store"});if(r.ok)render(await r.json());else $("state").innerHTML='<b class="bad">HTTP '+r.status+"</b>";}
  catch(e){$("state").innerHTML='<b class="bad">walfold unreachable</b>';}
}
async function act(kind,key){
  const r=await fetch("/api/dead/"+kind,{method:"POST",headers:{"Content-Type":"application/json","X-CSRF-Token":last.csrf||""},body:JSON.stringify({key})});
  const j=await r.json();$("action-result").innerHTML='<div class="'+(r.ok?"ok":"bad")+'" id="action-message">'+esc(r.ok?(kind==="retry"?"key "+key+" is back in the queue":"key "+key+": "+j.jobs+" job(s) dropped; run walfold reconcile --repair"):j.error)+"</div>";
  refresh();
}
document.addEventListener("click",async ev=>{
  const b=ev.target.closest("button");if(!b)return;
  const row=b.closest("tr[data-key]");const key=row&&row.dataset.key;
  if(b.classList.contains("inspect")){const r=await fetch("/api/dead?key="+encodeURIComponent(key));$("inspect").innerHTML="<pre>"+esc(JSON.stringify(await r.json(),null,1))+"</pre>";}
  else if(b.classList.contains("retry")||b.classList.contains("purge")){
    pending={kind:b.classList.contains("retry")?"retry":"purge",key};
    $("confirm-text").textContent=pending.kind==="retry"?"Put dead key "+key+" back in the queue?":"Drop every job of dead key "+key+"? Its changes will be missing from the read model until `walfold reconcile --repair`.";
    $("confirm").classList.add("show");}
  else if(b.id==="confirm-yes"&&pending){$("confirm").classList.remove("show");const p=pending;pending=null;act(p.kind,p.key);}
  else if(b.id==="confirm-no"){pending=null;$("confirm").classList.remove("show");}
});
refresh();setInterval(refresh,2000);
</script></body></html>)PAGE";

}  // namespace

const char* status_page_html() {
  return kStatusPage;
}

}  // namespace walfold::observe
